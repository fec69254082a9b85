package org.pixelpost.train;

import java.util.LinkedHashMap;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.tensor.Tensors;

/** An exponential moving average of the weights: {@code ema = decay ema + (1 - decay) p} after each step. */
public final class Ema implements AutoCloseable {
    private final Map<String, Tensor> params, shadow = new LinkedHashMap<>();
    private final double decay;

    public Ema(Map<String, Tensor> params, double decay) {
        this.params = params;
        this.decay = decay;
        try (var g = Tensors.noGrad()) {
            params.forEach((k, p) -> {
                Tensor c = p.detach().clone();
                c.retainReference();
                shadow.put(k, c);
            });
        }
    }

    public void update() {
        try (var g = Tensors.noGrad()) {
            params.forEach((k, p) -> shadow.get(k).lerp_(p, org.pixelpost.tensor.Tensors.s(1 - decay)));
        }
    }

    public Map<String, Tensor> weights() {
        return shadow;
    }

    /** Frees the averaged weights' native memory. */
    @Override
    public void close() {
        shadow.values().forEach(Tensor::releaseReference);
        shadow.clear();
    }

    public void load(Map<String, Tensor> w) {
        try (var g = Tensors.noGrad()) {
            shadow.forEach((k, t) -> {
                Tensor x = w.get(k);
                if (x == null || !java.util.Arrays.equals(org.pixelpost.tensor.Tensors.shape(x), org.pixelpost.tensor.Tensors.shape(t)))
                    throw new IllegalArgumentException("EMA weights lack " + k + " in its shape");
                t.copy_(x);
            });
        }
    }
}
