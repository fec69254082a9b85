package org.pixelpost.train;

import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.tensor.Tensors;

/**
 * An exponential moving average of the weights: {@code ema = decay ema + (1 - decay) p} after each
 * step, one operation over the {@link FlatParameters} buffer.
 */
public final class Ema implements AutoCloseable {
    private final FlatParameters flat;
    private final Tensor shadow;
    private final double decay;

    public Ema(FlatParameters flat, double decay) {
        this.flat = flat;
        this.decay = decay;
        try (var g = Tensors.noGrad()) {
            shadow = flat.data().detach().clone();
            shadow.retainReference();
        }
    }

    public void update() {
        try (var g = Tensors.noGrad(); var s = org.pixelpost.tensor.Scope.open()) {
            shadow.lerp_(flat.data(), Tensors.s(1 - decay));
        }
    }

    /** The averaged weights by parameter name (views into one buffer). */
    public Map<String, Tensor> weights() {
        return flat.views(shadow, "");
    }

    /** The averaged weights as one flat buffer, laid out like the parameters. */
    Tensor buffer() {
        return shadow;
    }

    /** Frees the averaged weights' native memory. */
    @Override
    public void close() {
        shadow.releaseReference();
    }

    public void load(Map<String, Tensor> w) {
        try (var g = Tensors.noGrad()) {
            weights().forEach((k, t) -> {
                Tensor x = w.get(k);
                if (x == null || !java.util.Arrays.equals(Tensors.shape(x), Tensors.shape(t)))
                    throw new IllegalArgumentException("EMA weights lack " + k + " in its shape");
                t.copy_(x);
            });
        }
    }
}
