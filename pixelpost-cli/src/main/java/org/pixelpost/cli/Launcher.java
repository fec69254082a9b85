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
 * collective; the launcher gives them a few seconds for that, then asks them to stop (SIGTERM), and
 * past {@code grace} stops them. Workers end themselves if the launcher is gone (killed with -9).
 */
public final class Launcher {
    /** The exit status of a launch: 0 when every worker succeeded, else the first failure's. */
    public static int run(int nproc, List<String> command, long graceSeconds) throws IOException, InterruptedException {
        int port = freePort();
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        List<String> jvm = new ArrayList<>();
        for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments())
            if (!a.startsWith("-agentlib") && !a.startsWith("-javaagent") && !a.startsWith("-Xdebug")) jvm.add(a);
        List<Process> workers = new ArrayList<>();
        Thread stopAll = new Thread(() -> {
            // SIGTERM / Ctrl-C on the launcher: each worker finishes its step, rank 0 checkpoints
            for (Process p : workers) p.destroy();
            stopWithin(workers, graceSeconds);
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
                env.put(PARENT, String.valueOf(ProcessHandle.current().pid()));
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
                // the others fail at their next collective; one busy elsewhere (encoding, sampling) is asked to stop, then stopped
                stopWithin(workers, 10);
                for (Process p : workers) p.destroy();
                stopWithin(workers, graceSeconds);
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

    /** The variable that tells a worker its launcher's pid. */
    static final String PARENT = "PIXELPOST_LAUNCHER_PID";

    /** Waits up to {@code seconds} in all for the workers to end, then kills those left. */
    private static void stopWithin(List<Process> workers, long seconds) {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        for (Process p : workers) {
            try {
                long left = deadline - System.nanoTime();
                if (left > 0) p.waitFor(left, TimeUnit.NANOSECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        for (Process p : workers) if (p.isAlive()) p.destroyForcibly();
    }

    /** In a worker: ends this process if its launcher has gone (killed with -9), so no worker is left running alone. */
    public static void watchLauncher() {
        String pid = System.getenv(PARENT);
        if (pid == null) return;
        java.util.Optional<ProcessHandle> launcher;
        try {
            launcher = ProcessHandle.of(Long.parseLong(pid.strip()));
        } catch (NumberFormatException e) {
            return;
        }
        if (launcher.isEmpty()) Runtime.getRuntime().halt(1);
        launcher.get().onExit().thenRun(() -> {
            System.err.println("pixelpost: the launcher (pid " + pid + ") has gone; this worker stops");
            Runtime.getRuntime().halt(1);
        });
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
