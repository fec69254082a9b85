package org.pixelpost.tensor;

import org.bytedeco.javacpp.Loader;
import org.bytedeco.openblas.global.openblas;
import org.bytedeco.pytorch.global.torch;

/**
 * Engine start-up: the only global state in the project.
 *
 * <p>Call {@link #start()} before touching any libtorch class. It extracts the bundled natives
 * first, so that a machine with another libtorch (Debian's {@code libtorch-dev}) cannot get its
 * copy linked in; then it pins BLAS to one thread, because OpenBLAS's own pool fights libtorch's
 * OpenMP pool (training ran about 6x slower with both at their defaults).
 */
public final class Engine {
    private static volatile boolean started;
    private static int threads, blasThreads;

    private Engine() {}

    /**
     * Starts the engine with libtorch using every core and BLAS on one thread. Idempotent. One of
     * several processes on a machine ({@code LOCAL_WORLD_SIZE}, as torchrun sets it) takes its share
     * of the cores.
     */
    public static void start() {
        if (started) return; // called before most native work: no lock once started
        int local = 1;
        try {
            String v = System.getenv("LOCAL_WORLD_SIZE");
            if (v != null && !v.isBlank()) local = Math.max(1, Integer.parseInt(v.strip()));
        } catch (NumberFormatException e) {
            // reported where the group is joined
        }
        start(Integer.getInteger("pixelpost.threads", Math.max(1, Runtime.getRuntime().availableProcessors() / local)),
              Integer.getInteger("pixelpost.blasThreads", 1));
    }

    public static synchronized void start(int intraOpThreads, int blasThreads) {
        if (started) return;
        try {
            // Extract every bundled library before the first load (see class comment).
            Loader.cacheResources(torch.class, "/org/bytedeco/pytorch/" + Loader.getPlatform() + "/");
            String gpu = "/org/bytedeco/pytorch/" + Loader.getPlatform() + "-gpu/"; // the CUDA build (mvn -Pgpu)
            if (torch.class.getResource(gpu) != null) Loader.cacheResources(torch.class, gpu);
        } catch (Exception e) {
            String cache;
            try { cache = String.valueOf(Loader.getCacheDir()); } catch (Exception ignored) { cache = "?"; }
            throw new IllegalStateException("cannot extract libtorch natives into the JavaCPP cache ("
                + cache + "): " + e.getMessage(), e);
        }
        Loader.load(openblas.class);
        openblas.blas_set_num_threads(blasThreads);
        Loader.load(torch.class);
        torch.set_num_threads(intraOpThreads);
        threads = intraOpThreads;
        Engine.blasThreads = blasThreads;
        started = true;
    }

    /**
     * The device named {@code spec}: {@code cpu}, {@code cuda} (the first GPU) or {@code cuda:N}.
     * Refused ({@link IllegalArgumentException}) with the reason where this process cannot use it.
     */
    public static org.bytedeco.pytorch.Device device(String spec) {
        checkDeviceSpec(spec);
        start();
        if (spec.equals("cpu")) return new org.bytedeco.pytorch.Device(torch.DeviceType.CPU);
        if (!torch.cuda_is_available())
            throw new IllegalArgumentException(spec + ": CUDA is not available to this process (this build carries libtorch's "
                + (torch.hasCUDA() ? "CUDA natives, but no GPU or driver was found" : "CPU natives only; build with mvn -Pgpu on a machine with an NVIDIA driver") + ")");
        int index = spec.equals("cuda") ? 0 : Integer.parseInt(spec.substring(5));
        int count = torch.cuda_device_count();
        if (index >= count) throw new IllegalArgumentException(spec + ": this machine has " + count + " CUDA device(s)");
        return new org.bytedeco.pytorch.Device(torch.DeviceType.CUDA, (byte) index);
    }

    /** Refuses a device name other than cpu, cuda and cuda:N (no engine needed). */
    public static void checkDeviceSpec(String spec) {
        if (spec == null || !spec.matches("cpu|cuda|cuda:\\d{1,2}"))
            throw new IllegalArgumentException("'" + spec + "' is not a device: cpu, cuda or cuda:N");
    }

    /** Seeds libtorch's default generator: one seed makes a run repeatable. */
    public static void seed(long seed) {
        start();
        torch.manual_seed(seed);
    }

    /** The machine's physical memory and the part of it free now, in bytes. */
    public static long physicalMemory() {
        return os().getTotalMemorySize();
    }

    public static long freeMemory() {
        return os().getFreeMemorySize();
    }

    private static com.sun.management.OperatingSystemMXBean os() {
        return (com.sun.management.OperatingSystemMXBean) java.lang.management.ManagementFactory.getOperatingSystemMXBean();
    }

    public static int threads() {
        start();
        return threads;
    }

    /**
     * Starts {@code n} threads that each run libtorch's CPU kernels on {@code threadsEach} OpenMP
     * threads, while the threads that already ran libtorch keep theirs. OpenMP's team size is a
     * per-thread setting that libtorch copies from its process-wide one when a thread first runs a
     * kernel; each pool thread is set up while the process-wide setting is {@code threadsEach}, and
     * the setting is put back from this thread once all of them are (a setting made on a thread also
     * sets that thread's own team size). A thread that runs its first kernel during those few
     * milliseconds keeps {@code threadsEach}.
     */
    public static synchronized java.util.concurrent.ExecutorService threadPool(int n, int threadsEach, String name) {
        start();
        java.util.concurrent.atomic.AtomicInteger count = new java.util.concurrent.atomic.AtomicInteger();
        java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(n, r -> {
            Thread t = new Thread(r, name + "-" + count.getAndIncrement());
            t.setDaemon(true);
            return t;
        });
        java.util.concurrent.CountDownLatch ready = new java.util.concurrent.CountDownLatch(n);
        java.util.List<java.util.concurrent.Future<Integer>> setUp = new java.util.ArrayList<>();
        torch.set_num_threads(threadsEach);
        try {
            for (int i = 0; i < n; i++)
                setUp.add(pool.submit(() -> {
                    torch.set_num_threads(threadsEach);
                    int got = torch.get_num_threads(); // fixes this thread's team size while the setting is threadsEach
                    ready.countDown();
                    // every task on its own thread; bounded, should a thread fail to start
                    if (!ready.await(60, java.util.concurrent.TimeUnit.SECONDS)) throw new IllegalStateException("the other pool threads did not start");
                    return got;
                }));
            for (var f : setUp) {
                int got = f.get();
                if (got != threadsEach) throw new IllegalStateException("a pool thread runs " + got + " libtorch threads, not " + threadsEach);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            pool.shutdownNow();
            throw new IllegalStateException("interrupted while starting the thread pool", e);
        } catch (java.util.concurrent.ExecutionException e) {
            pool.shutdownNow();
            throw new IllegalStateException("cannot start the thread pool: " + e.getCause(), e.getCause());
        } finally {
            torch.set_num_threads(threads);
        }
        return pool;
    }

    /**
     * Every task's result, in order, once all have ended: a failed task's error (the first; the others
     * suppressed in it) is thrown only after the others are done, so none is left running on tensors
     * and models the caller frees next. An interrupt is kept and waited through.
     */
    public static <T> java.util.List<T> awaitAll(java.util.List<java.util.concurrent.Future<T>> tasks) {
        java.util.List<T> out = new java.util.ArrayList<>();
        Throwable failure = null;
        boolean interrupted = false;
        for (java.util.concurrent.Future<T> f : tasks) {
            while (true) {
                try {
                    out.add(f.get());
                    break;
                } catch (InterruptedException e) {
                    interrupted = true; // the task still runs: wait for it all the same
                } catch (java.util.concurrent.ExecutionException e) {
                    if (failure == null) failure = e.getCause();
                    else failure.addSuppressed(e.getCause());
                    out.add(null);
                    break;
                }
            }
        }
        if (interrupted) Thread.currentThread().interrupt();
        if (failure instanceof RuntimeException r) throw r;
        if (failure instanceof Error err) throw err;
        if (failure != null) throw new IllegalStateException(failure);
        return out;
    }

    /** libtorch's CPU threads as the calling thread runs them (a pool thread of {@link #threadPool} has its own). */
    public static int threadsOfThisThread() {
        start();
        return torch.get_num_threads();
    }

    /** Threads of the BLAS library (libtorch's matrix products). */
    public static int blasThreads() {
        start();
        return blasThreads;
    }

    /**
     * Sets the BLAS library's threads for a while, e.g. to measure the machine's matrix-product peak
     * on every core; callers restore {@link #blasThreads()} afterwards. Not for use during training:
     * more than one BLAS thread competes with libtorch's OpenMP threads (see the class comment).
     */
    public static void setBlasThreadsTemporarily(int n) {
        start();
        openblas.blas_set_num_threads(n);
    }
}
