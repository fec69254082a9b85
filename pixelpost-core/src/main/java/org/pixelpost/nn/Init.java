package org.pixelpost.nn;

import org.bytedeco.pytorch.Device;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.tensor.Tensors;

/**
 * Where new parameters come from: PyTorch's initialisations, or, inside
 * {@code try (var m = Init.onMeta()) { ... }}, libtorch's meta device, where a tensor has a shape
 * and no memory. A module built on the meta device counts its parameters for nothing, and one
 * about to be loaded skips a random initialisation it would overwrite ({@link Module#load}
 * materialises each parameter from the file). The mode is per thread and restored on close.
 */
public final class Init implements AutoCloseable {
    private static final ThreadLocal<Boolean> META = ThreadLocal.withInitial(() -> false);
    private final boolean was;

    private Init() {
        was = META.get();
        META.set(true);
    }

    /** Parameters made on this thread until close are meta tensors. */
    public static Init onMeta() {
        return new Init();
    }

    /** Whether parameters are being made on the meta device. */
    public static boolean meta() {
        return META.get();
    }

    @Override
    public void close() {
        META.set(was);
    }

    private static Tensor empty(long... shape) {
        return torch.empty(shape, new TensorOptions(new Device("meta")), new org.bytedeco.pytorch.MemoryFormatOptional());
    }

    /** Uniform in [-bound, bound] (PyTorch's default for convolution and linear weights, bound = 1/sqrt(fan_in)). */
    public static Tensor uniform(double bound, long... shape) {
        if (meta()) return empty(shape);
        try (var g = Tensors.noGrad()) {
            Tensor t = torch.rand(shape);
            t.mul_(Tensors.s(2 * bound)).sub_(Tensors.s(bound)); // in place: a large model's initialisation leaves no garbage behind
            return t;
        }
    }

    /** Normal with standard deviation {@code std}. */
    public static Tensor normal(double std, long... shape) {
        if (meta()) return empty(shape);
        try (var g = Tensors.noGrad()) {
            return torch.randn(shape).mul_(Tensors.s(std));
        }
    }

    public static Tensor ones(long... shape) {
        return meta() ? empty(shape) : torch.ones(shape);
    }

    public static Tensor zeros(long... shape) {
        return meta() ? empty(shape) : torch.zeros(shape);
    }
}
