package org.pixelpost.model.autoencoder;

import org.bytedeco.pytorch.Tensor;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Tensors;
import org.pixelpost.nn.Module;

/**
 * A frozen image autoencoder. Callers speak one convention: images are {@code [B, 3, H, W]} RGB
 * in {@code [0, 1]}; latents are in the diffusion model's space (scaling and shift applied).
 * Each implementation maps these to its native range and latent scale, so no caller hard-codes
 * {@code 0.18215} or {@code [-1, 1]}.
 */
public interface Autoencoder extends AutoCloseable {
    /** How the decoder's own output is ranged. */
    enum PixelRange { ZERO_ONE, MINUS_ONE_ONE }

    String name();

    int latentChannels();

    /** Spatial downsampling factor (8 for the SD family and TAESD family). */
    int downsampling();

    /** Latent in model space = (raw latent - shift) * scaling. */
    double scalingFactor();

    double shiftFactor();

    PixelRange nativeRange();

    /** Images in [0, 1] to model-space latents (the posterior mean where the encoder is a VAE). */
    Tensor encode(Tensor images);

    /**
     * The encoder's distribution over model-space latents, a diagonal Gaussian: {@code mean} and
     * {@code logvar} {@code [B, C, h, w]}, or {@code logvar} null where the encoder is deterministic.
     */
    record Posterior(Tensor mean, Tensor logvar) {
        /** {@code exp(logvar / 2)}; null for a deterministic encoder. */
        public Tensor std() {
            return logvar == null ? null : logvar.mul(Tensors.s(0.5)).exp();
        }

        /** {@code mean + std * eps}, {@code eps} drawn from {@code g}; the mean itself for a deterministic encoder. */
        public Tensor sample(Generator g) {
            return logvar == null ? mean : mean.add(std().mul(g.randnLike(mean)));
        }
    }

    /** The posterior of {@link #encode} (images in [0, 1]); by default a deterministic encoder's. */
    default Posterior posterior(Tensor images) {
        return new Posterior(encode(images), null);
    }

    /**
     * Model-space latents to images in [0, 1] (not clamped, so gradients stay informative). With
     * {@code decoder().gradientCheckpointing(true)} its stages are recomputed in the backward.
     */
    Tensor decode(Tensor latents);

    /** Decoder FLOPs for one {@code h x w} latent, where the autoencoder counts them. */
    default java.util.OptionalLong decoderFlops(int h, int w) {
        return java.util.OptionalLong.empty();
    }

    Module encoder();

    Module decoder();

    /** Frees the weights' native memory; the autoencoder is unusable afterwards. */
    @Override
    default void close() {
        encoder().close();
        decoder().close();
    }

    default long parameterCount() {
        return encoder().parameterCount() + decoder().parameterCount();
    }
}
