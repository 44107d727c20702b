// Nimbus: the aws-lambda-java-core API (same names and signatures), so that code
// compiled against aws-lambda-java-core runs on Nimbus's Java runtime.
package com.amazonaws.services.lambda.runtime;

import java.util.Map;

/** The client context sent with an invocation (X-Amz-Client-Context). */
public interface ClientContext {
    Client getClient();

    Map<String, String> getCustom();

    Map<String, String> getEnvironment();
}
