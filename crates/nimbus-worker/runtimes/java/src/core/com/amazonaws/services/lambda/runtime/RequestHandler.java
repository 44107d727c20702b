// Nimbus: the aws-lambda-java-core API (same names and signatures), so that code
// compiled against aws-lambda-java-core runs on Nimbus's Java runtime.
package com.amazonaws.services.lambda.runtime;

/** A handler whose event and result are (de)serialized as JSON by the runtime. */
public interface RequestHandler<I, O> {
    O handleRequest(I input, Context context);
}
