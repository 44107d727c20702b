// Nimbus: the aws-lambda-java-core API (same names and signatures), so that code
// compiled against aws-lambda-java-core runs on Nimbus's Java runtime.
package com.amazonaws.services.lambda.runtime;

import java.io.IOException;

/** The function's logger outside a handler; the runtime installs its own at start-up. */
public final class LambdaRuntime {
    private LambdaRuntime() {}

    // Replaced (by reflection, as on Lambda) with the runtime's logger.
    private static volatile LambdaLogger logger = new LambdaLogger() {
        public void log(String message) {
            System.out.print(message);
        }

        public void log(byte[] message) {
            try {
                System.out.write(message);
            } catch (IOException e) {
                e.printStackTrace();
            }
        }
    };

    public static LambdaLogger getLogger() {
        return logger;
    }
}
