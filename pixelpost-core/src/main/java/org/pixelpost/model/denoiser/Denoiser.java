package org.pixelpost.model.denoiser;

import org.bytedeco.pytorch.Tensor;
import org.pixelpost.nn.Module;

/**
 * A latent denoiser conditioned on a timestep and text tokens: the contract the pipeline, the
 * objectives and the trainer see (DiT now; any other backbone implements the same). How its
 * output is read (noise, v or the clean sample) is the scheduler's {@code prediction_type}, the one
 * place that says it.
 */
public interface Denoiser extends AutoCloseable {
    /**
     * @param zT noisy latents {@code [B, C, H, W]}
     * @param t timesteps {@code [B]} (integer or float)
     * @param cond the conditioning: text tokens {@code [B, T, D]} with their mask {@code [B, T]}, and
     *     whatever else the family takes (a pooled vector, size conditions)
     * @return the model output {@code [B, C, H, W]}
     */
    Tensor forward(Tensor zT, Tensor t, org.pixelpost.model.Conditioning cond);

    /** The component's name in a diffusers pipeline folder, which LoRA files prefix its layers with ({@code unet}, {@code transformer}). */
    default String componentName() {
        return "transformer";
    }

    /**
     * The original (pre-diffusers) name of a parameter, where the family's original files use other
     * names than diffusers' (the LDM names of an SD U-Net, which kohya's LoRA files follow); null
     * where there is none.
     */
    default String originalName(String key) {
        return null;
    }

    /** Rows {@code [start, start + rows)} of a layer's output, published as the layer {@code name} (a path in the component). */
    record PublishedPart(String name, long start, long rows) {}

    /**
     * The layers under which the model's public form (diffusers') holds the layer at {@code path},
     * where that differs from {@code path}: one renamed layer, or the parts of a fused projection
     * (PixArt's fused q/k/v is diffusers' separate {@code to_q}, {@code to_k}, {@code to_v}). LoRA
     * files are written in these names and read from them (parts joined again). Empty: the layer
     * is published under its own path.
     */
    default java.util.List<PublishedPart> publishedLayers(String path) {
        return java.util.List.of();
    }

    /** Forward FLOPs for one sample at the model's own size over {@code textTokens} text tokens, where the model counts them. */
    default java.util.OptionalLong forwardFlops(int textTokens) {
        return java.util.OptionalLong.empty();
    }

    /** The parameter tree, for optimizers, EMA, checkpoints and adapters. */
    Module module();

    /** The class name written into model folders, by which {@link Denoisers} builds it again. */
    String className();

    /** The configuration as it is written to {@code config.json}. */
    com.fasterxml.jackson.databind.node.ObjectNode configJson();

    /** Writes {@code config.json} and the weights into {@code dir}. */
    void save(java.nio.file.Path dir) throws java.io.IOException;

    @Override
    void close();
}
