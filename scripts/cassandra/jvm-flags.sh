# Sourced: the JVM flags Cassandra's own jvm17-server.options gives (module access it needs on
# Java 17), as the array `opens`; used by ensure-cassandra.sh and nodetool.sh.
# shellcheck shell=bash
opens=()
for p in java.base/jdk.internal.misc java.base/jdk.internal.ref java.base/sun.nio.ch \
         java.management.rmi/com.sun.jmx.remote.internal.rmi java.rmi/sun.rmi.registry \
         java.rmi/sun.rmi.server java.sql/java.sql java.base/jdk.internal.math java.base/jdk.internal.module \
         java.base/jdk.internal.util.jar jdk.management/com.sun.management.internal; do
  opens+=("--add-exports=$p=ALL-UNNAMED")
done
for p in java.base/java.lang.module java.base/jdk.internal.loader java.base/jdk.internal.ref \
         java.base/jdk.internal.reflect java.base/jdk.internal.math java.base/jdk.internal.module \
         java.base/jdk.internal.util.jar jdk.management/com.sun.management.internal java.base/sun.nio.ch \
         java.base/java.io java.base/java.nio java.base/java.util.concurrent java.base/java.util \
         java.base/java.util.concurrent.atomic java.base/java.lang java.base/java.math java.base/java.net \
         java.base/java.lang.reflect java.base/jdk.internal.misc java.base/java.nio.channels; do
  opens+=("--add-opens=$p=ALL-UNNAMED")
done
