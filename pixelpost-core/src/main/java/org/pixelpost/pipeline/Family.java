package org.pixelpost.pipeline;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.model.autoencoder.Autoencoder;
import org.pixelpost.model.denoiser.Denoiser;
import org.pixelpost.model.text.TextEncoder;
import org.pixelpost.schedule.DdimScheduler;

/**
 * A model family: one composition of a denoiser, an autoencoder and a text encoder, and everything
 * that is particular to it in one place: the {@code _class_name} its {@code model_index.json}
 * carries, how its folders (and single files, where it has them) are read and written, its
 * defaults (guidance, image size rule, scheduler), and what its LoRA files say about it. The rest
 * of PixelPost asks the model's family instead of testing component types; a new family is one
 * implementation and one entry in {@link Families}.
 */
public interface Family {
    /** The {@code _class_name} values this family reads; the first is the one it writes. */
    List<String> classNames();

    /** A short name for messages ({@code "Stable Diffusion"}). */
    String displayName();

    /** Whether these components are this family's composition (the one place their kinds are tested). */
    boolean composes(Denoiser denoiser, Autoencoder autoencoder, TextEncoder textEncoder);

    /** Reads a folder whose index ({@code model_index.json}, already parsed) names this family. */
    TextToImageModel loadFolder(Path dir, JsonNode index, LoadOptions options) throws IOException;

    /** Writes the model's folder layout into {@code dir} (a temporary folder the caller renames into place). */
    void saveFolder(TextToImageModel m, Path dir) throws IOException;

    /** Whether the family has an original single-file layout. */
    default boolean hasSingleFile() {
        return false;
    }

    /** Whether a single file with these tensor names is this family's (asked only where {@link #hasSingleFile()}). */
    default boolean readsSingleFile(java.util.Set<String> keys) {
        return false;
    }

    /** Reads a single file; only where {@link #hasSingleFile()}. */
    default TextToImageModel loadSingleFile(Path file, LoadOptions options) throws IOException {
        throw new UnsupportedOperationException(displayName() + " models have no single-file layout");
    }

    /** Every weight under its single-file name; only where {@link #hasSingleFile()}. */
    default Map<String, Tensor> singleFileState(TextToImageModel m) {
        throw new IllegalArgumentException("only Stable Diffusion models have a single-file layout; " + displayName() + " models are written as folders");
    }

    /** The header metadata of the family's single file. */
    default Map<String, String> singleFileMetadata(TextToImageModel m) {
        return Map.of("format", "pt");
    }

    /**
     * The conditioning of images of {@code height x width} pixels: the text's, with whatever size
     * conditions the family's denoiser takes (PixArt-alpha 1024-MS's resolution and aspect ratio).
     */
    default org.pixelpost.model.Conditioning sizeConditions(TextToImageModel m, org.pixelpost.model.Conditioning text, int height, int width) {
        return text;
    }

    /**
     * The size {@code {height, width}} images asked for at {@code height x width} are made at: the
     * same, or the family's nearest trained size (PixArt's aspect-ratio bins), which the sampler
     * then resizes and crops to the size asked for.
     */
    default int[] samplingSize(TextToImageModel m, int height, int width) {
        return new int[] {height, width};
    }

    /** The classifier-free guidance scale sampling uses unless told otherwise. */
    double defaultGuidance();

    /** Why images of {@code size} pixels cannot be sampled from {@code m} (null: they can). */
    String sizeProblem(int size, TextToImageModel m);

    /** The scheduler a new model of the family (or a folder without one) gets. */
    DdimScheduler.Config defaultScheduler();

    /**
     * The LoRA target presets of the family's layers: preset name -> the endings of the layer paths
     * it selects, in the components' own naming ({@code --lora-targets attention} etc.).
     */
    Map<String, List<String>> loraPresets();

    /** The LoRA layout the family's tools read best ({@code kohya} for SD; {@code peft}, in diffusers' names, for transformers). */
    default String loraFormat() {
        return "peft";
    }

    /** Header metadata the family's LoRA files carry (kohya's {@code ss_base_model_version}). */
    default Map<String, String> loraMetadata(TextToImageModel m) {
        return Map.of();
    }
}
