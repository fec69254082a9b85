package org.pixelpost.tensor;

import org.bytedeco.pytorch.GeneratorOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;

/**
 * A random number generator of its own, passed explicitly to whatever draws random numbers, so
 * that no library call reseeds or advances the process-wide generator. A generator seeded with
 * {@code s} draws exactly what libtorch's default generator draws after {@code manual_seed(s)}.
 *
 * <p>A generator can be {@linkplain #shard sharded}: its batch-shaped draws (whose first dimension is
 * the batch) are then made for a batch {@code slots} times as large, and only slot {@code slot}'s
 * rows are returned. Every micro-batch and every process of a data-parallel step draws the same
 * global tensors, so sample {@code i} of the step gets the same timestep and noise however the
 * step's batch is split across processes and accumulation.
 */
public final class Generator implements AutoCloseable {
    private final org.bytedeco.pytorch.Generator gen;
    private long slot = 0, slots = 1;

    private Generator(long seed) {
        Engine.start();
        this.gen = torch.createCPUGenerator(seed);
        gen.retainReference(); // outlives the scope it was made in
    }

    public static Generator seeded(long seed) {
        return new Generator(seed);
    }

    /** Restarts the sequence from {@code seed}. */
    public Generator reseed(long seed) {
        gen.set_current_seed(seed);
        return this;
    }

    /** Batch-shaped draws return rows {@code [slot * b, (slot + 1) * b)} of a draw for {@code slots * b} rows (see the class comment). */
    public Generator shard(long slot, long slots) {
        if (slots < 1 || slot < 0 || slot >= slots) throw new IllegalArgumentException("slot " + slot + " of " + slots);
        this.slot = slot;
        this.slots = slots;
        return this;
    }

    /** Draws for {@code slots} times the batch, then keeps this slot's rows. */
    private Tensor sharded(long[] shape, java.util.function.Function<long[], Tensor> draw) {
        if (slots == 1 || shape.length == 0) return draw.apply(shape);
        long b = shape[0];
        long[] global = shape.clone();
        global[0] = b * slots;
        return draw.apply(global).narrow(0, slot * b, b).contiguous();
    }

    private GeneratorOptional opt() {
        return new GeneratorOptional(gen);
    }

    /** Standard normal float32 samples. */
    public Tensor randn(long... shape) {
        return sharded(shape, sh -> torch.randn(sh, opt(), new TensorOptions(ScalarType.Float)));
    }

    /** Standard normal samples shaped and typed like {@code like}. */
    public Tensor randnLike(Tensor like) {
        // drawn on the CPU, then moved: the same seed gives the same noise on every device
        return Tensors.follow(sharded(Tensors.shape(like), sh -> torch.randn(sh, opt(), new TensorOptions(like.scalar_type()))), like);
    }

    /** Uniform float32 samples in [0, 1). */
    public Tensor rand(long... shape) {
        return sharded(shape, sh -> torch.rand(sh, opt(), new TensorOptions(ScalarType.Float)));
    }

    /** Integers uniform in [0, high), int64. */
    public Tensor randint(long high, long... shape) {
        return sharded(shape, sh -> torch.randint(high, sh, opt(), new TensorOptions(ScalarType.Long)));
    }

    /** One integer uniform in [0, high) (never sharded: every slot draws the same). */
    public long nextLong(long high) {
        return high <= 1 ? 0 : (long) Tensors.item(torch.randint(high, new long[] {1}, opt(), new TensorOptions(ScalarType.Long)));
    }

    /** A random permutation of 0..n-1, int64 (never sharded). */
    public Tensor randperm(long n) {
        return torch.randperm(n, opt(), new TensorOptions(ScalarType.Long));
    }

    /** A well-mixed 64-bit value of two (SplitMix64's finaliser): a seed for draw {@code b} of a run seeded {@code a}. */
    public static long mix(long a, long b) {
        long z = a * 0x9E3779B97F4A7C15L + b;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    @Override
    public void close() {
        gen.releaseReference();
    }
}
