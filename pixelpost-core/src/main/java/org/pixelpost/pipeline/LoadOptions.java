package org.pixelpost.pipeline;

import java.nio.file.Path;
import org.pixelpost.schedule.PredictionType;

/**
 * How a model is read, whichever family it is: the options a loader of that family takes and the
 * others ignore.
 *
 * @param clipSkip 1: a CLIP text encoder's last layer; 2: the one before
 * @param predictionType null: from the scheduler config (a single file says nothing: epsilon)
 * @param tokenizer null: the folder's {@code tokenizer/}, or the encoder's own (embedded) for a single file
 * @param configs for single files whose configuration the shapes do not fix (see {@link ShapeDetection}): a diffusers folder with the component configs;
 *     for an original PixArt checkpoint (the transformer only), the PixArt folder whose other components it takes
 * @param textEncoderDtype the dtype a T5 text encoder is built and run in (null: fp32; bf16 halves its memory)
 */
public record LoadOptions(int clipSkip, PredictionType predictionType, Path tokenizer, Path configs, org.bytedeco.pytorch.global.torch.ScalarType textEncoderDtype) {
    public LoadOptions(int clipSkip, PredictionType predictionType, Path tokenizer, Path configs) {
        this(clipSkip, predictionType, tokenizer, configs, null);
    }

    public static LoadOptions defaults() {
        return new LoadOptions(1, null, null, null, null);
    }

    public LoadOptions withConfigs(Path diffusersFolder) {
        return new LoadOptions(clipSkip, predictionType, tokenizer, diffusersFolder, textEncoderDtype);
    }

    public LoadOptions withTextEncoderDtype(org.bytedeco.pytorch.global.torch.ScalarType dtype) {
        return new LoadOptions(clipSkip, predictionType, tokenizer, configs, dtype);
    }
}
