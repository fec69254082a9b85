package org.pixelpost.train;

import java.net.InetAddress;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.bytedeco.javacpp.chrono.Milliseconds;
import org.bytedeco.pytorch.AllreduceOptions;
import org.bytedeco.pytorch.BroadcastOptions;
import org.bytedeco.pytorch.GlooDeviceVector;
import org.bytedeco.pytorch.ProcessGroupGloo;
import org.bytedeco.pytorch.ReduceOp;
import org.bytedeco.pytorch.StringVector;
import org.bytedeco.pytorch.TCPStore;
import org.bytedeco.pytorch.TCPStoreOptions;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.Work;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.io.check.InvalidValueException;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * A data-parallel group of processes on libtorch's own collectives (c10d): a {@code TCPStore} on
 * rank 0 for the rendezvous, and {@code ProcessGroupGloo} for the collectives on the CPU or
 * {@code ProcessGroupNCCL} on CUDA. What
 * DistributedDataParallel does around a step is done here: rank 0's weights are broadcast before
 * the first step, and after backward the flat gradient buffer is all-reduced in buckets of a few
 * MB (summed, then divided by the number of processes).
 *
 * <p>The group is joined from the variables torchrun, Slurm recipes and Kubeflow's PyTorchJob set
 * ({@link Env#from}). When a peer stops (killed, or failed), the next collective fails at once on a
 * closed connection, or after the collective timeout if the peer hangs; the error then names the
 * rank that failed where the group can tell ({@link PeerFailure}).
 */
public final class DataParallel implements GradSync, AutoCloseable {
    /** Gradient bucket size, as DistributedDataParallel's default. */
    public static final long DEFAULT_BUCKET_BYTES = 25L << 20;

    private static final String KEY = "pixelpost/";

    /**
     * Where a process sits in its group, as torchrun's environment describes it.
     *
     * @param rank this process, 0 .. worldSize - 1; @param localRank its index on this machine
     * @param masterAddr the host of rank 0, which runs the rendezvous store; @param masterPort its port
     */
    public record Env(int rank, int worldSize, int localRank, int localWorldSize, String masterAddr, int masterPort) {
        public Env {
            if (worldSize < 1) throw new InvalidValueException("WORLD_SIZE", worldSize + " is not a positive number of processes");
            if (rank < 0 || rank >= worldSize) throw new InvalidValueException("RANK", rank + " is not in 0.." + (worldSize - 1) + " (WORLD_SIZE " + worldSize + ")");
            if (localWorldSize < 1 || localWorldSize > worldSize)
                throw new InvalidValueException("LOCAL_WORLD_SIZE", localWorldSize + " is not in 1.." + worldSize + " (WORLD_SIZE)");
            if (localRank < 0 || localRank >= localWorldSize)
                throw new InvalidValueException("LOCAL_RANK", localRank + " is not in 0.." + (localWorldSize - 1) + " (LOCAL_WORLD_SIZE " + localWorldSize + ")");
            if (masterPort < 1 || masterPort > 65535) throw new InvalidValueException("MASTER_PORT", masterPort + " is not a TCP port");
            if (masterAddr == null || masterAddr.isBlank()) throw new InvalidValueException("MASTER_ADDR", "is empty");
        }

        /**
         * The group described by {@code RANK}, {@code WORLD_SIZE}, {@code LOCAL_RANK},
         * {@code LOCAL_WORLD_SIZE}, {@code MASTER_ADDR} and {@code MASTER_PORT}; null when
         * {@code WORLD_SIZE} is not set (a single process). Local values default to one process per
         * machine; {@code MASTER_ADDR} to 127.0.0.1 and {@code MASTER_PORT} to 29500, as torchrun's.
         */
        public static Env from(Map<String, String> env) {
            String world = env.get("WORLD_SIZE");
            if (world == null || world.isBlank()) return null;
            int w = integer(env, "WORLD_SIZE", null), rank = integer(env, "RANK", null);
            int localWorld = integer(env, "LOCAL_WORLD_SIZE", env.containsKey("LOCAL_RANK") ? null : "1");
            int localRank = integer(env, "LOCAL_RANK", env.containsKey("LOCAL_WORLD_SIZE") ? null : "0");
            return new Env(rank, w, localRank, localWorld, env.getOrDefault("MASTER_ADDR", "127.0.0.1"),
                integer(env, "MASTER_PORT", "29500"));
        }

        private static int integer(Map<String, String> env, String name, String fallback) {
            String v = env.getOrDefault(name, fallback);
            if (v == null) throw new InvalidValueException(name, "is not set (WORLD_SIZE is, so the process is one of a group)");
            try {
                return Integer.parseInt(v.strip());
            } catch (NumberFormatException e) {
                throw new InvalidValueException(name, "'" + v + "' is not an integer");
            }
        }
    }

    /** A collective failed because another process of the group stopped or hung. */
    public static final class PeerFailure extends RuntimeException {
        /** The rank that failed, or -1 when the group could not tell. */
        public final int failedRank;

        PeerFailure(String message, int failedRank, Throwable cause) {
            super(message, cause);
            this.failedRank = failedRank;
        }
    }

    private final Env env;
    private final Duration timeout;
    private final long bucketElements;
    private final TCPStore store;
    private final org.bytedeco.pytorch.Backend group;
    private final boolean cuda;
    private final String host;
    private double allReduceSeconds;
    private long allReduces;

    private DataParallel(Env env, Duration timeout, long bucketBytes, TCPStore store, org.bytedeco.pytorch.Backend group, String host, boolean cuda) {
        this.cuda = cuda;
        this.env = env;
        this.timeout = timeout;
        this.bucketElements = Math.max(1, bucketBytes / Float.BYTES);
        this.store = store;
        this.group = group;
        this.host = host;
    }

    /**
     * Joins the group: rank 0 starts the store at {@code MASTER_ADDR:MASTER_PORT}, the others connect
     * to it (waiting up to {@code timeout}), then every rank connects to every other. Collectives
     * time out after {@code timeout} too.
     */
    public static DataParallel join(Env env, Duration timeout) {
        return join(env, timeout, DEFAULT_BUCKET_BYTES);
    }

    public static DataParallel join(Env env, Duration timeout, long bucketBytes) {
        return join(env, timeout, bucketBytes, false);
    }

    /** With {@code cuda}, the collectives run on NCCL over the GPUs' tensors (each process on its own GPU). */
    public static DataParallel join(Env env, Duration timeout, long bucketBytes, boolean cuda) {
        Engine.start();
        Milliseconds ms = new Milliseconds(timeout.toMillis());
        TCPStoreOptions so = new TCPStoreOptions();
        so.port((short) env.masterPort()).isServer(env.rank() == 0).waitWorkers(false).timeout(ms);
        TCPStore store;
        try {
            store = new TCPStore(env.masterAddr(), so);
        } catch (RuntimeException e) {
            throw new IllegalStateException("rank " + env.rank() + ": cannot " + (env.rank() == 0 ? "start" : "reach")
                + " the rendezvous store at " + env.masterAddr() + ":" + env.masterPort() + " (MASTER_ADDR, MASTER_PORT) within "
                + timeout.toSeconds() + " s: " + firstLine(e), e);
        }
        store.retainReference();
        String host;
        try {
            host = InetAddress.getLocalHost().getHostName();
        } catch (Exception e) {
            host = "?";
        }
        store.set(KEY + "pid/" + env.rank(), host + " " + ProcessHandle.current().pid());
        org.bytedeco.pytorch.Backend group;
        try {
            if (cuda) {
                org.bytedeco.pytorch.nccl.ProcessGroupNCCL.Options no = new org.bytedeco.pytorch.nccl.ProcessGroupNCCL.Options();
                no.timeout(ms);
                group = new org.bytedeco.pytorch.nccl.ProcessGroupNCCL(store, env.rank(), env.worldSize(), no);
            } else {
                ProcessGroupGloo.Options po = new ProcessGroupGloo.Options(ms);
                po.devices(new GlooDeviceVector(device(env)));
                group = new ProcessGroupGloo(store, env.rank(), env.worldSize(), po);
            }
        } catch (RuntimeException e) {
            store.releaseReference();
            throw new IllegalStateException("rank " + env.rank() + ": the " + env.worldSize() + " processes did not all join within "
                + timeout.toSeconds() + " s: " + firstLine(e), e);
        }
        group.retainReference();
        return new DataParallel(env, timeout, bucketBytes, store, group, host, cuda);
    }

    /** The network device Gloo uses: {@code GLOO_SOCKET_IFNAME} where set, loopback for a local group, else this host's name. */
    private static org.bytedeco.pytorch.gloo.Device device(Env env) {
        String ifname = System.getenv("GLOO_SOCKET_IFNAME");
        if (ifname != null && !ifname.isBlank()) return ProcessGroupGloo.createDeviceForInterface(ifname.split(",")[0].strip());
        if (isLoopback(env.masterAddr())) return ProcessGroupGloo.createDeviceForHostname("127.0.0.1");
        return ProcessGroupGloo.createDefaultDevice();
    }

    private static boolean isLoopback(String addr) {
        try {
            return InetAddress.getByName(addr).isLoopbackAddress();
        } catch (Exception e) {
            return false;
        }
    }

    public Env env() {
        return env;
    }

    @Override
    public int rank() {
        return env.rank();
    }

    @Override
    public int localRank() {
        return env.localRank();
    }

    @Override
    public int worldSize() {
        return env.worldSize();
    }

    /** Seconds spent in gradient all-reduces so far, and how many there were. */
    public double allReduceSeconds() {
        return allReduceSeconds;
    }

    public long allReduces() {
        return allReduces;
    }

    @Override
    public void broadcast(List<Tensor> tensors) {
        BroadcastOptions o = new BroadcastOptions();
        o.rootRank(0);
        for (Tensor t : tensors) run("broadcast", () -> group.broadcast(new TensorVector(t), o));
    }

    @Override
    public void averageGradients(FlatParameters flat) {
        long t0 = System.nanoTime();
        try (Scope s = Scope.open()) {
            Tensor g = flat.grad();
            long n = g.numel();
            List<Work> pending = new ArrayList<>();
            AllreduceOptions o = sumOptions();
            // every bucket is in flight at once; Gloo works through them while earlier ones finish
            for (long off = 0; off < n; off += bucketElements) {
                Tensor bucket = g.narrow(0, off, Math.min(bucketElements, n - off));
                pending.add(call("all-reduce", () -> group.allreduce(new TensorVector(bucket), o)));
            }
            for (Work w : pending) await("all-reduce", w);
            if (env.worldSize() > 1) g.div_(Tensors.s(env.worldSize()));
        }
        allReduceSeconds += (System.nanoTime() - t0) / 1e9;
        allReduces++;
    }

    @Override
    public void sum(double[] values) {
        if (values.length == 0) return;
        try (Scope s = Scope.open()) {
            ByteBuffer b = ByteBuffer.allocateDirect(values.length * Double.BYTES).order(ByteOrder.nativeOrder());
            b.asDoubleBuffer().put(values);
            Tensor host = Tensors.fromBytes(b, torch.ScalarType.Double, values.length);
            // NCCL reduces GPU tensors only: this process's GPU, the one of its local rank
            Tensor t = cuda ? host.to(new org.bytedeco.pytorch.Device(torch.DeviceType.CUDA, (byte) env.localRank()), host.scalar_type()) : host;
            run("all-reduce", () -> group.allreduce(new TensorVector(t), sumOptions()));
            Tensors.bytes(t.cpu()).order(ByteOrder.nativeOrder()).asDoubleBuffer().get(values);
        }
    }

    @Override
    public void barrier() {
        run("barrier", () -> group.barrier());
    }

    /**
     * Rank 0 says that {@code what} is done; the others wait for it in {@link #awaitRank0} without the
     * collective timeout (for work only rank 0 does, of unknown length, such as encoding the data).
     */
    @Override
    public void rank0Done(String what) {
        store.set(KEY + "done/" + what, "1");
    }

    @Override
    public void awaitRank0(String what) {
        try {
            store._wait(new StringVector(KEY + "done/" + what), new Milliseconds(30L * 24 * 3600 * 1000) /* 30 days */);
        } catch (RuntimeException e) {
            throw failure("waiting for rank 0 (" + what + ")", e);
        }
    }

    /**
     * Leaves a note in the store that this rank failed and why, so the others can name it. Best
     * effort: the store may be gone with rank 0.
     */
    public void reportFailure(Throwable e) {
        if (e instanceof PeerFailure) return; // another rank's failure: it is that rank that gets named
        String message = e.getMessage();
        try {
            store.set(KEY + "failed/" + env.rank(), message == null ? "failed" : message);
        } catch (RuntimeException ignored) {
            // the store's host has stopped: the others find that out themselves
        }
    }

    private static AllreduceOptions sumOptions() {
        AllreduceOptions o = new AllreduceOptions();
        o.reduceOp(new ReduceOp(ReduceOp.RedOpType.SUM));
        return o;
    }

    private interface Collective {
        Work start();
    }

    private Work call(String what, Collective c) {
        try {
            return c.start();
        } catch (RuntimeException e) {
            throw failure(what, e);
        }
    }

    private void run(String what, Collective c) {
        await(what, call(what, c));
    }

    private void await(String what, Work w) {
        try {
            w._wait();
        } catch (RuntimeException e) {
            throw failure(what, e);
        }
    }

    /** Names the rank that failed: one that left a note, or one on this host whose process is gone. */
    private PeerFailure failure(String what, RuntimeException e) {
        String why = firstLine(e);
        int failed = -1;
        String detail = null;
        try {
            store.setTimeout(new Milliseconds(2000));
            for (int r = 0; r < env.worldSize() && failed < 0; r++) {
                if (r == env.rank()) continue;
                StringVector key = new StringVector(KEY + "failed/" + r);
                if (store.check(key)) {
                    failed = r;
                    detail = "rank " + r + " failed: " + store.get_to_str(KEY + "failed/" + r);
                    break;
                }
                String[] hostPid = store.get_to_str(KEY + "pid/" + r).split(" ");
                if (hostPid.length == 2 && hostPid[0].equals(host) && ProcessHandle.of(Long.parseLong(hostPid[1])).isEmpty()) {
                    failed = r;
                    detail = "rank " + r + " (pid " + hostPid[1] + ") is no longer running (killed?)";
                }
            }
        } catch (RuntimeException storeGone) {
            if (env.rank() != 0) {
                failed = 0;
                detail = "rank 0, which holds the rendezvous store at " + env.masterAddr() + ":" + env.masterPort() + ", is unreachable (stopped?)";
            }
        }
        if (detail == null) detail = "a peer stopped or did not answer within the collective timeout of " + timeout.toSeconds() + " s";
        return new PeerFailure("rank " + env.rank() + ": " + what + " failed: " + detail + " (" + why + ")", failed, e);
    }

    private static String firstLine(Throwable e) {
        String m = String.valueOf(e.getMessage());
        int nl = m.indexOf('\n');
        m = nl < 0 ? m : m.substring(0, nl);
        // libtorch prefixes the C++ source location: keep the message
        int close = m.startsWith("[") ? m.indexOf("] ") : -1;
        return close > 0 ? m.substring(close + 2) : m;
    }

    @Override
    public void close() {
        group.releaseReference();
        store.releaseReference();
    }
}
