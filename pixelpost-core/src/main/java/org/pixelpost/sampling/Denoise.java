package org.pixelpost.sampling;

import org.bytedeco.pytorch.Tensor;

/** The model output for latents {@code zT [B, C, h, w]} at timestep {@code t} (fractional for the sigma-space samplers): what a sampler loop calls. */
@FunctionalInterface
public interface Denoise {
    Tensor apply(Tensor zT, double t);
}
