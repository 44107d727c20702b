// Nimbus: the aws-lambda-java-core API (same names and signatures), so that code
// compiled against aws-lambda-java-core runs on Nimbus's Java runtime.
package com.amazonaws.services.lambda.runtime;

/** The Amazon Cognito identity that made an invocation. */
public interface CognitoIdentity {
    String getIdentityId();

    String getIdentityPoolId();
}
