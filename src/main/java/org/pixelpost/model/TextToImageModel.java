package org.pixelpost.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.pixelpost.diffusion.DdimScheduler;
import org.pixelpost.io.AtomicFiles;
import org.pixelpost.io.BadFileException;
import org.pixelpost.model.autoencoder.Autoencoder;
import org.pixelpost.model.autoencoder.Autoencoders;
import org.pixelpost.model.denoiser.DiT;
import org.pixelpost.model.text.MiniLmTextEncoder;
import org.pixelpost.model.text.TextEncoder;

/**
 * A text-to-image latent diffusion model on disk, laid out like a diffusers pipeline folder:
 * {@code model_index.json} (autoencoder, text encoder, image size, latent scale),
 * {@code denoiser/} and {@code scheduler/scheduler_config.json}.
 */
public final class TextToImageModel implements AutoCloseable {
    public final DiT denoiser;
    public final Autoencoder autoencoder;
    public final TextEncoder textEncoder;
    public final DdimScheduler.Config scheduler;
    public final String autoencoderSpec;
    public final int imageSize;
    /** Diffusion runs on {@code latentScale * autoencoder latent}, so latents are near unit variance. */
    public final double latentScale;

    public TextToImageModel(DiT denoiser, Autoencoder autoencoder, String autoencoderSpec, TextEncoder textEncoder,
                            DdimScheduler.Config scheduler, int imageSize, double latentScale) {
        this.denoiser = denoiser;
        this.autoencoder = autoencoder;
        this.autoencoderSpec = autoencoderSpec;
        this.textEncoder = textEncoder;
        this.scheduler = scheduler;
        this.imageSize = imageSize;
        this.latentScale = latentScale;
    }

    /** The scheduler of SD-class models: scaled_linear 0.00085..0.012, steps offset 1, no clipping. */
    public static DdimScheduler.Config defaultScheduler() {
        return DdimScheduler.Config.defaults().withBetas(0.00085, 0.012, "scaled_linear").withClipSample(false)
            .withSetAlphaToOne(false).withStepsOffset(1);
    }

    /** A new, randomly initialised model of a named DiT size over an autoencoder. */
    public static TextToImageModel create(String size, String autoencoderSpec, int imageSize, double latentScale) throws IOException {
        Autoencoder ae = Autoencoders.load(autoencoderSpec);
        DiT.Config named = DiT.Config.named(size);
        int latent = imageSize / ae.downsampling();
        DiT.Config c = new DiT.Config(ae.latentChannels(), ae.latentChannels(), latent, named.patchSize(), named.hiddenSize(),
            named.depth(), named.numHeads(), named.mlpRatio(), 384, named.predictionType());
        return new TextToImageModel(new DiT(c), ae, autoencoderSpec, new MiniLmTextEncoder(), defaultScheduler(), imageSize, latentScale);
    }

    public static TextToImageModel load(Path dir) throws IOException {
        Path index = dir.resolve("model_index.json");
        if (!Files.isRegularFile(index)) throw new BadFileException(dir, "not a model folder (no model_index.json)");
        JsonNode j;
        try {
            j = new ObjectMapper().readTree(index.toFile());
        } catch (IOException e) {
            throw new BadFileException(index, "malformed JSON (" + e.getMessage() + ")");
        }
        String te = j.path("text_encoder").asText(MiniLmTextEncoder.NAME);
        if (!te.equals(MiniLmTextEncoder.NAME)) throw new BadFileException(index, "unknown text encoder '" + te + "'");
        String aeSpec = j.path("autoencoder").asText("taef2");
        Path rel = dir.resolve(aeSpec);
        Autoencoder ae = Autoencoders.load(Files.exists(rel) && !aeSpec.isEmpty() ? rel.toString() : aeSpec);
        DiT dit = DiT.load(dir.resolve("denoiser"));
        Path sched = dir.resolve("scheduler/scheduler_config.json");
        DdimScheduler.Config sc = Files.isRegularFile(sched) ? DdimScheduler.Config.read(sched) : defaultScheduler();
        return new TextToImageModel(dit, ae, aeSpec, new MiniLmTextEncoder(j.path("max_tokens").asInt(32)), sc,
            j.path("image_size").asInt(64), j.path("latent_scale").asDouble(1.0));
    }

    /** Writes the whole folder under a temporary name and renames it into place. */
    public void save(Path dir) throws IOException {
        Path abs = dir.toAbsolutePath();
        Files.createDirectories(abs.getParent());
        Path tmp = abs.resolveSibling("." + abs.getFileName() + ".tmp-" + ProcessHandle.current().pid());
        AtomicFiles.deleteTree(tmp);
        denoiser.save(tmp.resolve("denoiser"));
        Files.createDirectories(tmp.resolve("scheduler"));
        ObjectMapper om = new ObjectMapper();
        AtomicFiles.writeString(tmp.resolve("scheduler/scheduler_config.json"), om.writerWithDefaultPrettyPrinter().writeValueAsString(scheduler.toJson()));
        ObjectNode idx = om.createObjectNode();
        idx.put("_class_name", "PixelPostTextToImage").put("denoiser", "DiT").put("autoencoder", autoencoderSpec)
            .put("text_encoder", textEncoder.name()).put("max_tokens", textEncoder.maxTokens())
            .put("image_size", imageSize).put("latent_scale", latentScale);
        AtomicFiles.writeString(tmp.resolve("model_index.json"), om.writerWithDefaultPrettyPrinter().writeValueAsString(idx));
        Path old = abs.resolveSibling("." + abs.getFileName() + ".old-" + ProcessHandle.current().pid());
        if (Files.exists(abs)) Files.move(abs, old);
        Files.move(tmp, abs);
        AtomicFiles.deleteTree(old);
    }


    @Override
    public void close() {
        textEncoder.close();
        denoiser.close();
    }
}
