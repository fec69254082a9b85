package org.pixelpost.sampling;

import org.bytedeco.pytorch.Tensor;
import org.pixelpost.tensor.Tensors;

/**
 * Euler's method on the probability-flow ODE in sigma space (Karras et al. 2022, Algorithm 1 without
 * churn), as the reference library's {@code EulerDiscreteScheduler}: {@code d = (x - x0Hat) / sigma},
 * {@code x' = x + d (sigmaNext - sigma)}.
 */
public final class Euler {
    private Euler() {}

    /** One step from {@code sigma} to {@code sigmaNext}, given the model's estimate {@code x0Hat} of the clean sample. */
    public static Tensor step(Tensor x, Tensor x0Hat, double sigma, double sigmaNext) {
        Tensor d = x.sub(x0Hat).div(Tensors.s(sigma));                                   // [B, C, h, w]
        return x.add(d.mul(Tensors.s(sigmaNext - sigma)));                               // [B, C, h, w]
    }
}
