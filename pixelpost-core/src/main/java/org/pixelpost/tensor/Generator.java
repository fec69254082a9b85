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
 */
public final class Generator implements AutoCloseable {
    private final org.bytedeco.pytorch.Generator gen;

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

    private GeneratorOptional opt() {
        return new GeneratorOptional(gen);
    }

    /** Standard normal float32 samples. */
    public Tensor randn(long... shape) {
        return torch.randn(shape, opt(), new TensorOptions(ScalarType.Float));
    }

    /** Standard normal samples shaped and typed like {@code like}. */
    public Tensor randnLike(Tensor like) {
        return torch.randn(Tensors.shape(like), opt(), new TensorOptions(like.scalar_type()));
    }

    /** Uniform float32 samples in [0, 1). */
    public Tensor rand(long... shape) {
        return torch.rand(shape, opt(), new TensorOptions(ScalarType.Float));
    }

    /** Integers uniform in [0, high), int64. */
    public Tensor randint(long high, long... shape) {
        return torch.randint(high, shape, opt(), new TensorOptions(ScalarType.Long));
    }

    /** One integer uniform in [0, high). */
    public long nextLong(long high) {
        return high <= 1 ? 0 : (long) Tensors.item(randint(high, 1));
    }

    /** A random permutation of 0..n-1, int64. */
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
