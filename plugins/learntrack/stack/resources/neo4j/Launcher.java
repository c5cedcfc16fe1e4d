// Minimal embedded Neo4j 5.26 (community) launcher for LearnTrack local dev.
//
// install.sh compiles this once into TOOLS_DIR/classes; launch with
//   java @TOOLS_DIR/jvm.options -cp 'TOOLS_DIR/lib/*:TOOLS_DIR/classes' Launcher DATA_DIR HOST:PORT [LOG_FILE]
// Source-file mode also works (same arguments, ~1-5 s slower start, ~60 MB more RSS):
//   java @TOOLS_DIR/jvm.options -cp 'TOOLS_DIR/lib/*' TOOLS_DIR/Launcher.java DATA_DIR HOST:PORT [LOG_FILE]
//
//   DATA_DIR   Neo4j home for this instance; store files go to DATA_DIR/data,
//              Neo4j's own logs (debug.log, ...) to DATA_DIR/logs. Created if missing.
//   HOST:PORT  Bolt listen address, e.g. 127.0.0.1:7687.
//   LOG_FILE   optional; this launcher's stdout/stderr are also appended there.
//
// Prints "neo4j ready bolt://HOST:PORT" once the default database answers a
// query. On SIGTERM/SIGINT it shuts the DBMS down cleanly and exits 0.
// Startup failure (e.g. port in use, store locked): message on stderr, exit 1.
// Authentication is disabled: local development only.

import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;

import org.neo4j.configuration.GraphDatabaseInternalSettings;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.connectors.HttpsConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.GraphDatabaseService;
import org.neo4j.graphdb.Transaction;

public class Launcher {

    private static final long MB = 1024L * 1024L;

    private static volatile DatabaseManagementService managementService;
    private static final AtomicBoolean stopped = new AtomicBoolean(false);

    public static void main(String[] args) throws Exception {
        if (args.length < 2 || args.length > 3) {
            System.err.println("usage: java @jvm.options -cp 'lib/*:classes' Launcher DATA_DIR HOST:PORT [LOG_FILE]");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath().normalize();
        String boltArg = args[1];
        if (args.length == 3) {
            teeOutputTo(Path.of(args[2]).toAbsolutePath());
        }

        int colon = boltArg.lastIndexOf(':');
        if (colon <= 0 || colon == boltArg.length() - 1) {
            die("bolt address must be HOST:PORT, got '" + boltArg + "'", 2);
        }
        String host = boltArg.substring(0, colon);
        int port;
        try {
            port = Integer.parseInt(boltArg.substring(colon + 1));
        } catch (NumberFormatException e) {
            die("bad port in bolt address '" + boltArg + "'", 2);
            return;
        }

        Files.createDirectories(home);
        long t0 = System.nanoTime();
        System.out.println("neo4j starting: home=" + home + " bolt=" + host + ":" + port
                + " java=" + Runtime.version() + " jvm_uptime_ms="
                + java.lang.management.ManagementFactory.getRuntimeMXBean().getUptime());

        SocketAddress bolt = new SocketAddress(host, port);
        try {
            managementService = new DatabaseManagementServiceBuilder(home)
                    // network: Bolt only, bound to the given address; no HTTP(S)
                    .setConfig(GraphDatabaseSettings.default_listen_address, new SocketAddress(host))
                    .setConfig(GraphDatabaseSettings.default_advertised_address, new SocketAddress(host))
                    .setConfig(BoltConnector.enabled, true)
                    .setConfig(BoltConnector.listen_address, bolt)
                    .setConfig(BoltConnector.advertised_address, bolt)
                    .setConfig(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.DISABLED)
                    .setConfig(BoltConnector.server_bolt_telemetry_enabled, false)
                    .setConfig(BoltConnector.thread_pool_max_size, 50)
                    // default Netty quiet period (5s, applied per event loop group)
                    // makes SIGTERM take ~11s; internal setting, pinned version
                    .setConfig(GraphDatabaseInternalSettings.netty_server_shutdown_quiet_period, 0)
                    .setConfig(HttpConnector.enabled, false)
                    .setConfig(HttpsConnector.enabled, false)
                    // local dev: no auth, no phoning home
                    .setConfig(GraphDatabaseSettings.auth_enabled, false)
                    .setConfig(GraphDatabaseSettings.udc_enabled, false)
                    // small footprint for a 2-core dev box unless told otherwise (settings.neo4j_pagecache_mb)
                    .setConfig(GraphDatabaseSettings.pagecache_memory,
                            Long.getLong("learntrack.neo4j.pagecache_mb", 128L) * MB)
                    .setConfig(GraphDatabaseSettings.memory_transaction_global_max_size, 256 * MB)
                    .setConfig(GraphDatabaseSettings.keep_logical_logs, "2 files")
                    .setConfig(GraphDatabaseSettings.logical_log_rotation_threshold, 16 * MB)
                    .setConfig(GraphDatabaseSettings.preallocate_logical_logs, false)
                    .build();
        } catch (Throwable t) {
            System.err.println("neo4j failed to start: " + t);
            t.printStackTrace();
            System.exit(1);
            return;
        }

        // Shutdown hook covers System.exit / SIGHUP; TERM and INT are handled
        // explicitly so that a requested stop ends with exit status 0.
        Runtime.getRuntime().addShutdownHook(new Thread(Launcher::stop, "neo4j-shutdown-hook"));
        for (String sig : new String[] {"TERM", "INT"}) {
            try {
                sun.misc.Signal.handle(new sun.misc.Signal(sig), s -> {
                    System.out.println("neo4j received SIG" + s.getName() + ", shutting down");
                    stop();
                    System.exit(0);
                });
            } catch (Throwable ignored) {
                // fall back to the shutdown hook (exit status 143/130)
            }
        }

        GraphDatabaseService db = managementService.database(GraphDatabaseSettings.DEFAULT_DATABASE_NAME);
        if (!db.isAvailable(120_000)) {
            System.err.println("neo4j failed to start: default database not available after 120s");
            System.exit(1);
        }
        try (Transaction tx = db.beginTx()) {
            tx.execute("RETURN 1").close();
            tx.commit();
        }
        long ms = (System.nanoTime() - t0) / 1_000_000;
        System.out.println("neo4j ready bolt://" + SocketAddress.format(host, port) + " (" + ms + " ms)");
        System.out.flush();

        new CountDownLatch(1).await(); // wait forever; exit via signal
    }

    private static void stop() {
        if (!stopped.compareAndSet(false, true)) {
            return;
        }
        DatabaseManagementService svc = managementService;
        if (svc == null) {
            return;
        }
        long t0 = System.nanoTime();
        System.out.println("neo4j stopping");
        try {
            svc.shutdown();
            System.out.println("neo4j stopped (" + (System.nanoTime() - t0) / 1_000_000 + " ms)");
        } catch (Throwable t) {
            System.err.println("neo4j shutdown error: " + t);
        }
        System.out.flush();
    }

    private static void die(String msg, int code) {
        System.err.println("neo4j launcher: " + msg);
        System.exit(code);
    }

    private static void teeOutputTo(Path logFile) throws IOException {
        Path parent = logFile.getParent();
        if (parent != null) {
            Files.createDirectories(parent);
        }
        OutputStream file = new FileOutputStream(logFile.toFile(), true);
        System.setOut(new PrintStream(new Tee(System.out, file), true));
        System.setErr(new PrintStream(new Tee(System.err, file), true));
    }

    private static final class Tee extends OutputStream {
        private final OutputStream a;
        private final OutputStream b;

        Tee(OutputStream a, OutputStream b) {
            this.a = a;
            this.b = b;
        }

        @Override
        public void write(int c) throws IOException {
            synchronized (b) {
                a.write(c);
                b.write(c);
            }
        }

        @Override
        public void write(byte[] buf, int off, int len) throws IOException {
            synchronized (b) {
                a.write(buf, off, len);
                b.write(buf, off, len);
            }
        }

        @Override
        public void flush() throws IOException {
            a.flush();
            b.flush();
        }
    }
}
