package org.pixelpost.train;

import java.util.LinkedHashMap;
import java.util.Map;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.tensor.Tensors;

/**
 * Adam with decoupled weight decay (Loshchilov and Hutter): {@code p -= lr (mHat / (sqrt(vHat) +
 * eps) + wd p)}. It works on {@link FlatParameters}: the update is a few operations over one
 * buffer, whatever the number of parameters. The moments are flat buffers too, exposed as named
 * views, so they checkpoint like the weights.
 */
public final class AdamW implements AutoCloseable {
    private final FlatParameters flat;
    private final boolean ownsFlat;
    private final Tensor m, v;
    private final double beta1, beta2, eps, weightDecay;
    private final long chunk;
    private long step;

    /** Over {@code params}, laid out in a buffer of their own. */
    public AdamW(Map<String, Tensor> params, double beta1, double beta2, double eps, double weightDecay) {
        this(new FlatParameters(params), true, beta1, beta2, eps, weightDecay, CHUNK);
    }

    /** Over parameters already laid out in {@code flat} (shared with the EMA and clipping). */
    public AdamW(FlatParameters flat, double beta1, double beta2, double eps, double weightDecay) {
        this(flat, false, beta1, beta2, eps, weightDecay, CHUNK);
    }

    /** With {@code chunk} elements per pass (tests use small ones). */
    AdamW(FlatParameters flat, boolean ownsFlat, double beta1, double beta2, double eps, double weightDecay, long chunk) {
        this.chunk = chunk;
        this.flat = flat;
        this.ownsFlat = ownsFlat;
        this.beta1 = beta1;
        this.beta2 = beta2;
        this.eps = eps;
        this.weightDecay = weightDecay;
        m = keep(flat.zeros());
        v = keep(flat.zeros());
    }

    private static Tensor keep(Tensor t) {
        t.retainReference();
        return t;
    }

    public long steps() {
        return step;
    }

    public FlatParameters flat() {
        return flat;
    }

    /** Elements updated per pass: bounds the one temporary (the denominator) to 64 MB, whatever the model's size. */
    static final long CHUNK = 1L << 24;

    /** One update with the gradients the parameters hold. */
    public void step(double lr) {
        step++;
        double c1 = 1 - Math.pow(beta1, step), c2 = 1 - Math.pow(beta2, step);
        long n = flat.numel();
        try (var g = Tensors.noGrad(); var s = org.pixelpost.tensor.Scope.open()) {
            Scalar b1 = Tensors.s(beta1), b2 = Tensors.s(beta2), oneMinusB1 = Tensors.s(1 - beta1), oneMinusB2 = Tensors.s(1 - beta2);
            Scalar decay = Tensors.s(1 - lr * weightDecay), c2s = Tensors.s(c2), epsilon = Tensors.s(eps), stepSize = Tensors.s(-lr / c1);
            for (long off = 0; off < n; off += chunk) {
                try (var pass = org.pixelpost.tensor.Scope.open()) {
                    long len = Math.min(chunk, n - off);
                    Tensor p = flat.data().narrow(0, off, len), grad = flat.grad().narrow(0, off, len);
                    Tensor mc = m.narrow(0, off, len), vc = v.narrow(0, off, len);
                    mc.mul_(b1).add_(grad, oneMinusB1);                         // m = beta1 m + (1 - beta1) g
                    vc.mul_(b2).addcmul_(grad, grad, oneMinusB2);               // v = beta2 v + (1 - beta2) g^2
                    if (weightDecay != 0) p.mul_(decay);                        // decoupled weight decay
                    Tensor denom = vc.div(c2s);                                 // vHat
                    denom.sqrt_().add_(epsilon);                                // sqrt(vHat) + eps
                    p.addcdiv_(mc, denom, stepSize);                            // p -= lr mHat / denom
                }
            }
        }
    }

    public void zeroGrad() {
        flat.zeroGrad();
    }

    /** Moments under {@code m.KEY} and {@code v.KEY}, and the step count under {@code step}. */
    /** The moment buffers, flat and laid out like the parameters. */
    java.util.List<Tensor> buffers() {
        return java.util.List.of(m, v);
    }

    public Map<String, Tensor> state() {
        Map<String, Tensor> s = new LinkedHashMap<>();
        s.putAll(flat.views(m, "m."));
        s.putAll(flat.views(v, "v."));
        s.put("step", Tensors.fromFloats(new float[] {step}, 1).to(torch.ScalarType.Long));
        return s;
    }

    public void load(Map<String, Tensor> s) {
        try (var g = Tensors.noGrad()) {
            flat.views(m, "m.").forEach((k, t) -> t.copy_(require(s, k, t)));
            flat.views(v, "v.").forEach((k, t) -> t.copy_(require(s, k, t)));
        }
        step = (long) Tensors.item(require(s, "step"));
    }

    /** Frees the moments' native memory (and the parameter buffer's, where this optimizer made it). */
    @Override
    public void close() {
        m.releaseReference();
        v.releaseReference();
        if (ownsFlat) flat.close();
    }

    private static Tensor require(Map<String, Tensor> s, String k) {
        Tensor t = s.get(k);
        if (t == null) throw new IllegalArgumentException("optimizer state lacks " + k);
        return t;
    }

    private static Tensor require(Map<String, Tensor> s, String k, Tensor like) {
        Tensor t = require(s, k);
        if (!java.util.Arrays.equals(Tensors.shape(t), Tensors.shape(like)))
            throw new IllegalArgumentException("optimizer state " + k + " has shape " + java.util.Arrays.toString(Tensors.shape(t)));
        return t;
    }
}
