#!/bin/sh
# Builds Nimbus's Java runtime into OUT_DIR (the runtime root, /var/runtime in an environment):
#   OUT_DIR/nimbus-lambda-core.jar     the aws-lambda-java-core API + the launcher (system class path)
#   OUT_DIR/nimbus-lambda-runtime.jar  the runtime proper (its own class loader, with gson)
#   OUT_DIR/gson.jar                   Debian's libgoogle-gson-java (>= 2.10)
#   OUT_DIR/bootstrap                  the launch script
# Needs javac and jar (JDK 17 or later) and /usr/share/java/gson.jar (or GSON_JAR=...).
set -eu
if [ $# -ne 1 ]; then
    echo "usage: $0 OUT_DIR" >&2
    exit 2
fi
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$1
GSON_JAR=${GSON_JAR:-/usr/share/java/gson.jar}
JAVAC=${JAVA_HOME:+$JAVA_HOME/bin/}javac
JAR=${JAVA_HOME:+$JAVA_HOME/bin/}jar
[ -f "$GSON_JAR" ] || { echo "gson not found at $GSON_JAR (apt-get install libgoogle-gson-java)" >&2; exit 1; }

mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/core" "$WORK/runtime"

find "$HERE/src/core" -name '*.java' > "$WORK/core.list"
"$JAVAC" --release 17 -nowarn -encoding UTF-8 -d "$WORK/core" @"$WORK/core.list"
find "$HERE/src/runtime" -name '*.java' > "$WORK/runtime.list"
"$JAVAC" --release 17 -nowarn -encoding UTF-8 -cp "$WORK/core:$GSON_JAR" -d "$WORK/runtime" @"$WORK/runtime.list"

"$JAR" --create --file "$OUT/nimbus-lambda-core.jar" --main-class dev.nimbus.lambda.Launcher -C "$WORK/core" .
"$JAR" --create --file "$OUT/nimbus-lambda-runtime.jar" -C "$WORK/runtime" .
cp "$GSON_JAR" "$OUT/gson.jar"
cp "$HERE/bootstrap" "$OUT/bootstrap"
chmod 0755 "$OUT/bootstrap"
chmod 0644 "$OUT/nimbus-lambda-core.jar" "$OUT/nimbus-lambda-runtime.jar" "$OUT/gson.jar"
echo "built $OUT"
