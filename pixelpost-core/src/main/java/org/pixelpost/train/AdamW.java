package org.pixelpost.train;

import java.util.LinkedHashMap;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.tensor.Tensors;

/**
 * Adam with decoupled weight decay (Loshchilov and Hutter): {@code p -= lr (mHat / (sqrt(vHat) +
 * eps) + wd p)}. The moments are plain named tensors, so they checkpoint like the weights.
 */
public final class AdamW implements AutoCloseable {
    private final Map<String, Tensor> params;
    private final Map<String, Tensor> m = new LinkedHashMap<>(), v = new LinkedHashMap<>();
    private final double beta1, beta2, eps, weightDecay;
    private long step;

    public AdamW(Map<String, Tensor> params, double beta1, double beta2, double eps, double weightDecay) {
        this.params = params;
        this.beta1 = beta1;
        this.beta2 = beta2;
        this.eps = eps;
        this.weightDecay = weightDecay;
        params.forEach((k, p) -> {
            m.put(k, keep(torch.zeros_like(p)));
            v.put(k, keep(torch.zeros_like(p)));
        });
    }

    private static Tensor keep(Tensor t) {
        t.retainReference();
        return t;
    }

    public long steps() {
        return step;
    }

    /** One update with the gradients the parameters hold. Parameters without a gradient are left alone. */
    public void step(double lr) {
        step++;
        double c1 = 1 - Math.pow(beta1, step), c2 = 1 - Math.pow(beta2, step);
        try (var g = Tensors.noGrad()) {
            for (Map.Entry<String, Tensor> e : params.entrySet()) {
                // a scope per parameter: the one temporary (denom) is freed at once, so the update
                // needs one parameter's worth of extra memory, not the whole model's
                try (var s = org.pixelpost.tensor.Scope.open()) {
                    Tensor p = e.getValue(), grad = p.grad();
                    if (grad == null || !grad.defined()) continue;
                    Tensor mi = m.get(e.getKey()), vi = v.get(e.getKey());
                    mi.mul_(Tensors.s(beta1)).add_(grad, Tensors.s(1 - beta1));
                    vi.mul_(Tensors.s(beta2)).addcmul_(grad, grad, Tensors.s(1 - beta2));
                    if (weightDecay != 0) p.mul_(Tensors.s(1 - lr * weightDecay));
                    Tensor denom = vi.div(Tensors.s(c2));
                    denom.sqrt_().add_(Tensors.s(eps));
                    p.addcdiv_(mi, denom, Tensors.s(-lr / c1));
                }
            }
        }
    }

    public void zeroGrad() {
        for (Tensor p : params.values()) {
            Tensor g = p.grad();
            if (g != null && g.defined()) g.zero_();
        }
    }

    /** Moments under {@code m.KEY} and {@code v.KEY}, and the step count under {@code step}. */
    public Map<String, Tensor> state() {
        Map<String, Tensor> s = new LinkedHashMap<>();
        m.forEach((k, t) -> s.put("m." + k, t));
        v.forEach((k, t) -> s.put("v." + k, t));
        s.put("step", Tensors.fromFloats(new float[] {step}, 1).to(torch.ScalarType.Long));
        return s;
    }

    public void load(Map<String, Tensor> s) {
        try (var g = Tensors.noGrad()) {
            m.forEach((k, t) -> t.copy_(require(s, "m." + k, t)));
            v.forEach((k, t) -> t.copy_(require(s, "v." + k, t)));
        }
        step = (long) Tensors.item(require(s, "step"));
    }

    /** Frees the moments' native memory. */
    @Override
    public void close() {
        m.values().forEach(Tensor::releaseReference);
        v.values().forEach(Tensor::releaseReference);
        m.clear();
        v.clear();
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
