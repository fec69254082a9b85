package org.pixelpost.objective;

import org.bytedeco.pytorch.Tensor;
import org.pixelpost.model.denoiser.Denoiser;

/**
 * Diffusion-DPO (Eq. 4) against a frozen {@code reference}, with its pixel counterpart at weight mu.
 * {@code beta} multiplies per-element mean errors as Eq. 4 writes it (the reference code's
 * {@code beta_dpo} is twice this).
 */
public record Dpo(Denoiser reference, double beta, double latentWeight, PixelTerm pixel) implements PreferenceObjective {
    public Dpo {
        if (reference == null) throw new IllegalArgumentException("DPO needs a reference model");
        Objectives.checkWeights(latentWeight, pixel);
    }

    @Override
    public Tensor margin(Tensor modelW, Tensor modelL, Tensor refW, Tensor refL) {
        return Objectives.dpoMargin(modelW, modelL, refW, refL, beta);
    }
}
