package org.pixelpost.tensor;

import java.nio.ByteBuffer;
import java.util.Arrays;
import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.ScalarOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptional;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;

/** Small conversions between Java values and libtorch tensors. */
public final class Tensors {
    private Tensors() {}

    public static Tensor fromFloats(float[] data, long... shape) {
        Engine.start();
        long n = Arrays.stream(shape).reduce(1, (a, b) -> a * b);
        if (n != data.length) throw new IllegalArgumentException(
            "shape " + Arrays.toString(shape) + " holds " + n + " values, got " + data.length);
        Tensor t = torch.empty(shape, new TensorOptions(ScalarType.Float), null);
        new FloatPointer(t.data_ptr()).capacity(n).put(data);
        return t;
    }

    public static Tensor scalarTensor(double v) {
        return fromFloats(new float[] {(float) v});
    }

    /** A copy of the values as floats, in row-major order. */
    public static float[] toFloats(Tensor t) {
        try (Scope s = Scope.open()) {
            Tensor c = t.detach().to(ScalarType.Float).contiguous();
            float[] out = new float[(int) c.numel()];
            new FloatPointer(c.data_ptr()).capacity(out.length).get(out);
            return out;
        }
    }

    public static double item(Tensor t) {
        try (Scope s = Scope.open()) {
            return t.detach().to(ScalarType.Double).item().toDouble();
        }
    }

    public static long[] shape(Tensor t) {
        long[] s = new long[(int) t.dim()];
        for (int i = 0; i < s.length; i++) s[i] = t.size(i);
        return s;
    }

    /** Empty tensor of the given dtype whose bytes are then filled from {@code src}. */
    public static Tensor fromBytes(ByteBuffer src, ScalarType dtype, long... shape) {
        Engine.start();
        Tensor t = torch.empty(shape, new TensorOptions(dtype), null);
        long nbytes = t.nbytes();
        if (src.remaining() != nbytes) throw new IllegalArgumentException(
            "expected " + nbytes + " bytes for " + dtype + Arrays.toString(shape) + ", got " + src.remaining());
        if (nbytes > 0) new BytePointer(t.data_ptr()).capacity(nbytes).asBuffer().put(src);
        return t;
    }

    /** A view of a contiguous CPU tensor's bytes; valid while the tensor lives. */
    public static ByteBuffer bytes(Tensor contiguous) {
        long n = contiguous.nbytes();
        if (n == 0) return ByteBuffer.allocate(0);
        return new BytePointer(contiguous.data_ptr()).capacity(n).asBuffer();
    }

    /** {@code t} on {@code like}'s device (itself when it is there already). */
    public static Tensor follow(Tensor t, Tensor like) {
        org.bytedeco.pytorch.Device d = like.device();
        return isOn(t, d) ? t : t.to(d, t.scalar_type());
    }

    /** Whether {@code t} is on {@code device} (any device of its kind where {@code device} has no index). */
    public static boolean isOn(Tensor t, org.bytedeco.pytorch.Device device) {
        org.bytedeco.pytorch.Device mine = t.device();
        return mine.type() == device.type() && (!device.has_index() || mine.index() == device.index());
    }

    public static Scalar s(double v) {
        return new Scalar(v);
    }

    public static TensorOptional opt(Tensor t) {
        return t == null ? new TensorOptional() : new TensorOptional(t);
    }

    public static Tensor clamp(Tensor t, double lo, double hi) {
        return t.clamp(new ScalarOptional(s(lo)), new ScalarOptional(s(hi)));
    }

    /** Disables autograd until closed: {@code try (var g = Tensors.noGrad()) { ... }}. */
    public static NoGradGuard noGrad() {
        Engine.start();
        return new NoGradGuard();
    }

    public static TensorOptions floatOptions() {
        return new TensorOptions(ScalarType.Float);
    }

    public static String describe(Tensor t) {
        return t.scalar_type().intern() + Arrays.toString(shape(t));
    }
}
