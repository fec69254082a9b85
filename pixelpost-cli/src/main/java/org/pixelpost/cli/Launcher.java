package org.pixelpost.cli;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.net.ServerSocket;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * One machine's data-parallel launch, as torchrun's standalone mode: starts N worker JVMs running
 * the same command with {@code RANK}, {@code WORLD_SIZE}, {@code LOCAL_RANK},
 * {@code LOCAL_WORLD_SIZE}, {@code MASTER_ADDR} and {@code MASTER_PORT} set, waits for them, and
 * stops them all when one fails. The workers themselves notice a failed peer at their next
 * collective; the launcher only makes sure none outlives the others by more than {@code grace}.
 */
final class Launcher {
    /** The exit status of a launch: 0 when every worker succeeded, else the first failure's. */
    static int run(int nproc, List<String> command, long graceSeconds) throws IOException, InterruptedException {
        int port = freePort();
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        List<String> jvm = new ArrayList<>();
        for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments())
            if (!a.startsWith("-agentlib") && !a.startsWith("-javaagent") && !a.startsWith("-Xdebug")) jvm.add(a);
        List<Process> workers = new ArrayList<>();
        Thread stopAll = new Thread(() -> {
            // SIGTERM / Ctrl-C on the launcher: each worker finishes its step, rank 0 checkpoints
            for (Process p : workers) p.destroy();
            for (Process p : workers) {
                try {
                    p.waitFor(graceSeconds, TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    break;
                }
                p.destroyForcibly();
            }
        });
        Runtime.getRuntime().addShutdownHook(stopAll);
        try {
            for (int rank = 0; rank < nproc; rank++) {
                List<String> cmd = new ArrayList<>(List.of(java));
                cmd.addAll(jvm);
                cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), Main.class.getName()));
                cmd.addAll(command);
                ProcessBuilder b = new ProcessBuilder(cmd).inheritIO();
                Map<String, String> env = b.environment();
                env.put("RANK", String.valueOf(rank));
                env.put("WORLD_SIZE", String.valueOf(nproc));
                env.put("LOCAL_RANK", String.valueOf(rank));
                env.put("LOCAL_WORLD_SIZE", String.valueOf(nproc));
                env.put("MASTER_ADDR", "127.0.0.1");
                env.put("MASTER_PORT", String.valueOf(port));
                workers.add(b.start());
            }
            System.err.printf("launched %d workers on 127.0.0.1:%d (pids %s)%n", nproc, port,
                workers.stream().map(p -> String.valueOf(p.pid())).toList());
            int failedRank = -1, status = 0;
            while (workers.stream().anyMatch(Process::isAlive)) {
                for (int r = 0; r < nproc && failedRank < 0; r++) {
                    Process p = workers.get(r);
                    if (!p.isAlive() && p.exitValue() != 0) {
                        failedRank = r;
                        status = p.exitValue();
                        System.err.println("pixelpost: rank " + r + " (pid " + p.pid() + ") " + how(status) + "; stopping the other workers");
                    }
                }
                if (failedRank >= 0) break;
                Thread.sleep(100);
            }
            if (failedRank >= 0) {
                // the others fail at their next collective; past the grace period they are stopped
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(graceSeconds);
                for (Process p : workers) {
                    long left = deadline - System.nanoTime();
                    if (left <= 0 || !p.waitFor(left, TimeUnit.NANOSECONDS)) p.destroyForcibly().waitFor();
                }
                return status;
            }
            for (int r = 0; r < nproc; r++) {
                int code = workers.get(r).waitFor();
                if (code != 0) {
                    System.err.println("pixelpost: rank " + r + " " + how(code));
                    return code;
                }
            }
            return 0;
        } finally {
            try {
                Runtime.getRuntime().removeShutdownHook(stopAll);
            } catch (IllegalStateException shuttingDown) {
                // the hook is already running
            }
        }
    }

    private static String how(int status) {
        if (status > 128 && status <= 128 + 64) {
            int sig = status - 128;
            String name = switch (sig) {
                case 9 -> "SIGKILL";
                case 15 -> "SIGTERM";
                case 2 -> "SIGINT";
                case 6 -> "SIGABRT";
                case 11 -> "SIGSEGV";
                default -> "signal " + sig;
            };
            return "was killed by " + name + " (exit status " + status + ")";
        }
        return "exited with status " + status;
    }

    private static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    private Launcher() {}
}
