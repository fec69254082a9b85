package org.pixelpost.objective;

import org.bytedeco.pytorch.Tensor;
import org.pixelpost.model.denoiser.Denoiser;

/** SimPO (Eq. 5) without a reference, with its pixel counterpart at weight mu (Eqs. 6-7). */
public record Simpo(double beta, double gamma, double latentWeight, PixelTerm pixel) implements PreferenceObjective {
    public Simpo {
        Objectives.checkWeights(latentWeight, pixel);
    }

    @Override
    public Denoiser reference() {
        return null;
    }

    @Override
    public Tensor margin(Tensor modelW, Tensor modelL, Tensor refW, Tensor refL) {
        return Objectives.simpoMargin(modelW, modelL, beta, gamma);
    }
}
