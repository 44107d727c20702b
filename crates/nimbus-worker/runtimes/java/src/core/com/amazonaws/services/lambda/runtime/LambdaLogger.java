// Nimbus: the aws-lambda-java-core API (same names and signatures), so that code
// compiled against aws-lambda-java-core runs on Nimbus's Java runtime.
package com.amazonaws.services.lambda.runtime;

import com.amazonaws.services.lambda.runtime.logging.LogLevel;

/** The function's log, as Lambda hands it out (Context#getLogger, LambdaRuntime#getLogger). */
public interface LambdaLogger {
    void log(String message);

    void log(byte[] message);

    default void log(String message, LogLevel logLevel) {
        log(message);
    }

    default void log(byte[] message, LogLevel logLevel) {
        log(message);
    }
}
