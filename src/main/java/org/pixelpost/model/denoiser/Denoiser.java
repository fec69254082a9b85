package org.pixelpost.model.denoiser;

import org.bytedeco.pytorch.Tensor;
import org.pixelpost.diffusion.PredictionType;
import org.pixelpost.model.Module;

/** A latent denoiser conditioned on a timestep and text tokens. */
public interface Denoiser {
    /**
     * @param zT noisy latents {@code [B, C, H, W]}
     * @param t timesteps {@code [B]} (integer or float)
     * @param textTokens per-token text features {@code [B, T, D]}
     * @param textMask {@code [B, T]}, true (or 1) where a token takes part
     * @return the model output {@code [B, C, H, W]}, read as {@link #predictionType()} says
     */
    Tensor forward(Tensor zT, Tensor t, Tensor textTokens, Tensor textMask);

    PredictionType predictionType();

    /** The parameters, for optimizers, EMA and checkpoints. */
    Module module();
}
