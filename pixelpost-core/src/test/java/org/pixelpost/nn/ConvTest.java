package org.pixelpost.nn;

import static org.junit.jupiter.api.Assertions.*;

import java.util.ArrayList;
import java.util.List;
import org.bytedeco.javacpp.PointerPointer;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * {@link Layers#conv2d} against a float64 convolution (libtorch's reference kernel, not oneDNN's),
 * forward and both gradients, over the channel counts, kernels, strides and layouts SD's U-Net and
 * VAEs use and the ones where libtorch 2.10's oneDNN path computed wrongly. Fresh allocations are
 * filled with junk while it runs, so a kernel that reads memory nobody wrote shows up as a wrong
 * number instead of depending on what the allocator happened to hand out.
 */
class ConvTest {
    @BeforeAll
    static void junkFill() {
        Engine.start();
        flag("--caffe2_cpu_allocator_do_junk_fill=true");
    }

    @AfterAll
    static void noJunkFill() {
        flag("--caffe2_cpu_allocator_do_junk_fill=false");
    }

    static void flag(String f) {
        try (PointerPointer<?> argv = new PointerPointer<>("conv-test", f)) {
            assertTrue(torch.ParseCommandLineFlags(new int[] {2}, argv), f);
        }
    }

    /** max |a - ref| / max |ref|, NaN counted as infinitely wrong. */
    static double relErr(Tensor a, Tensor ref) {
        Tensor d = a.to(torch.ScalarType.Double).sub(ref).abs();
        if (torch.isfinite(d).all().item_bool() == false) return Double.POSITIVE_INFINITY;
        return Tensors.item(d.max()) / Math.max(1e-12, Tensors.item(ref.abs().max()));
    }

    record Case(long in, long out, long k, long stride, boolean channelsLast) {
        long padding() { return k == 3 ? 1 : 0; }
        @Override public String toString() {
            return in + "->" + out + " k" + k + " s" + stride + (channelsLast ? " channels-last" : " NCHW");
        }
    }

    /** The worst relative error of forward, dx, dw and db for one case at one dtype. */
    static double[] errors(Case c, torch.ScalarType dtype, Generator g) {
        long hw = 13;
        Tensor x64 = g.randn(2, c.in(), hw, hw).to(torch.ScalarType.Double);
        Tensor w64 = g.randn(c.out(), c.in(), c.k(), c.k()).mul(Tensors.s(1 / Math.sqrt(c.in() * c.k() * c.k()))).to(torch.ScalarType.Double);
        Tensor b64 = g.randn(c.out()).to(torch.ScalarType.Double);
        long ho = (hw + 2 * c.padding() - c.k()) / c.stride() + 1;
        Tensor gy64 = g.randn(2, c.out(), ho, ho).to(torch.ScalarType.Double);

        Tensor[] ref = run(x64, w64, b64, gy64, c, true);
        Tensor x = x64.to(dtype), w = w64.to(dtype), b = b64.to(dtype);
        if (c.channelsLast()) x = x.contiguous(torch.MemoryFormat.ChannelsLast);
        Tensor[] got = run(x, w, b, gy64.to(dtype), c, false);
        double[] e = new double[4];
        for (int i = 0; i < 4; i++) e[i] = relErr(got[i], ref[i]);
        return e;
    }

    /** y, dx, dw, db: through torch.conv2d (the reference) or Layers.conv2d. */
    static Tensor[] run(Tensor x, Tensor w, Tensor b, Tensor gy, Case c, boolean reference) {
        x = x.detach().requires_grad_(true);
        w = w.detach().requires_grad_(true);
        b = b.detach().requires_grad_(true);
        Tensor y = reference
            ? torch.conv2d(x, w, Tensors.opt(b), new long[] {c.stride(), c.stride()}, new long[] {c.padding(), c.padding()}, new long[] {1, 1}, 1)
            : Layers.conv2d(x, w, b, c.stride(), c.padding());
        TensorVector grads = torch.grad(new TensorVector(y), new TensorVector(x, w, b), new TensorVector(gy), new org.bytedeco.pytorch.BoolOptional(false), false, false);
        return new Tensor[] {y.detach(), grads.get(0), grads.get(1), grads.get(2)};
    }

    static List<Case> grid(long[] channels, long[] kernels) {
        List<Case> cases = new ArrayList<>();
        for (long in : channels) for (long out : channels) for (long k : kernels) for (long s : new long[] {1, 2})
            for (boolean cl : new boolean[] {false, true}) cases.add(new Case(in, out, k, s, cl));
        return cases;
    }

    @Test
    void float32MatchesFloat64ForEveryChannelCountKernelStrideAndLayout() {
        List<String> wrong = new ArrayList<>();
        try (Generator g = Generator.seeded(7)) {
            for (Case c : grid(new long[] {3, 4, 20, 40, 48, 64}, new long[] {1, 2, 3})) {
                try (Scope s = Scope.open()) {
                    double[] e = errors(c, torch.ScalarType.Float, g);
                    String[] names = {"y", "dx", "dw", "db"};
                    for (int i = 0; i < 4; i++) if (!(e[i] < 1e-4)) wrong.add(c + " " + names[i] + " " + e[i]);
                }
            }
        }
        assertTrue(wrong.isEmpty(), wrong.size() + " wrong: " + String.join("; ", wrong));
    }

    @Test
    void bfloat16MatchesFloat64WithinItsPrecision() {
        List<String> wrong = new ArrayList<>();
        try (Generator g = Generator.seeded(8)) {
            for (Case c : grid(new long[] {3, 4, 20, 64}, new long[] {1, 3})) {
                try (Scope s = Scope.open()) {
                    double[] e = errors(c, torch.ScalarType.BFloat16, g);
                    String[] names = {"y", "dx", "dw", "db"};
                    // bf16 keeps 8 bits of mantissa; sums over up to 576 products stay within a few percent
                    for (int i = 0; i < 4; i++) if (!(e[i] < 4e-2)) wrong.add(c + " " + names[i] + " " + e[i]);
                }
            }
        }
        assertTrue(wrong.isEmpty(), wrong.size() + " wrong: " + String.join("; ", wrong));
    }
}
