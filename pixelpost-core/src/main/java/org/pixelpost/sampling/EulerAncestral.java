package org.pixelpost.sampling;

import org.bytedeco.pytorch.Tensor;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Tensors;

/**
 * Ancestral Euler, as the reference library's {@code EulerAncestralDiscreteScheduler}: a
 * deterministic Euler step down to {@code sigmaDown}, then fresh noise of {@code sigmaUp}, where
 * {@code sigmaUp^2 = sigmaNext^2 (sigma^2 - sigmaNext^2) / sigma^2} and
 * {@code sigmaDown^2 = sigmaNext^2 - sigmaUp^2}.
 */
public final class EulerAncestral {
    private EulerAncestral() {}

    /** One step from {@code sigma} to {@code sigmaNext}; the noise is drawn from {@code g}. */
    public static Tensor step(Tensor x, Tensor x0Hat, double sigma, double sigmaNext, Generator g) {
        return step(x, x0Hat, sigma, sigmaNext, g.randnLike(x));
    }

    /** One step from {@code sigma} to {@code sigmaNext} with the standard normal {@code noise} shaped like {@code x}. */
    public static Tensor step(Tensor x, Tensor x0Hat, double sigma, double sigmaNext, Tensor noise) {
        float from = (float) sigma, to = (float) sigmaNext; // float32 as the reference computes them
        float up = (float) Math.sqrt(to * to * (from * from - to * to) / (from * from));
        float down = (float) Math.sqrt(to * to - up * up);
        Tensor d = x.sub(x0Hat).div(Tensors.s(from));                                    // [B, C, h, w]
        Tensor next = x.add(d.mul(Tensors.s(down - from)));                              // [B, C, h, w]
        return next.add(noise.mul(Tensors.s(up)));                                       // [B, C, h, w]
    }
}
