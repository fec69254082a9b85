package org.pixelpost.pipeline;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.pixelpost.io.AtomicFiles;
import org.pixelpost.model.autoencoder.Autoencoder;
import org.pixelpost.model.autoencoder.Autoencoders;
import org.pixelpost.model.denoiser.Denoiser;
import org.pixelpost.model.denoiser.Denoisers;
import org.pixelpost.model.text.MiniLmTextEncoder;
import org.pixelpost.model.text.TextEncoder;
import org.pixelpost.model.text.TextEncoders;
import org.pixelpost.schedule.DdimScheduler;

/**
 * PixelPost's own folders: any denoiser and text encoder PixelPost builds by class name
 * ({@link Denoisers}, {@link TextEncoders}) over a named or saved autoencoder. The index names each
 * component's class and records the image size and latent scale; {@code denoiser/} holds the
 * denoiser's config and weights, {@code scheduler/} the scheduler config.
 */
final class PixelPostFamily implements Family {
    static final String CLASS_NAME = "PixelPostTextToImage";

    @Override public List<String> classNames() { return List.of(CLASS_NAME); }
    @Override public String displayName() { return "PixelPost"; }

    /** Any composition: the family of models built in memory from any components (written only where PixelPost builds them by class name). */
    @Override
    public boolean composes(Denoiser d, Autoencoder a, TextEncoder t) {
        return true;
    }

    @Override public double defaultGuidance() { return 4.5; }

    @Override
    public String sizeProblem(int size, TextToImageModel m) {
        return size == m.imageSize ? null : size + " differs from the model's " + m.imageSize + " (a DiT samples at its own size)";
    }

    @Override public DdimScheduler.Config defaultScheduler() { return TextToImageModel.defaultScheduler(); }

    /** The DiT's fused qkv, cross-attention q and kv and output projections; its MLPs. */
    @Override
    public java.util.Map<String, List<String>> loraPresets() {
        return java.util.Map.of("attention", List.of(".attn.qkv", ".attn.proj", ".cross_attn.q_linear", ".cross_attn.kv_linear", ".cross_attn.proj"),
            "ff", List.of(".mlp.fc1", ".mlp.fc2"));
    }

    @Override
    public TextToImageModel loadFolder(Path dir, JsonNode j, LoadOptions o) throws IOException {
        String aeSpec = j.path("autoencoder").asText("taef2");
        Path rel = dir.resolve(aeSpec);
        Autoencoder ae = Autoencoders.load(Files.exists(rel) && !aeSpec.isEmpty() ? rel.toString() : aeSpec);
        Denoiser denoiser = null;
        TextEncoder te = null;
        try {
            denoiser = Denoisers.load(dir.resolve("denoiser"), componentClass(j.path("denoiser"), "DiT"));
            te = TextEncoders.load(componentClass(j.path("text_encoder"), MiniLmTextEncoder.CLASS_NAME), dir, j, dir.resolve("model_index.json"));
            Path sched = dir.resolve("scheduler/scheduler_config.json");
            DdimScheduler.Config sc = Files.isRegularFile(sched) ? DdimScheduler.Config.read(sched) : defaultScheduler();
            return new TextToImageModel(denoiser, ae, aeSpec, te, sc, j.path("image_size").asInt(64), j.path("latent_scale").asDouble(1.0));
        } catch (IOException | RuntimeException e) {
            if (denoiser != null) denoiser.close();
            if (te != null) te.close();
            ae.close();
            throw e;
        }
    }

    /** A component's class from its index entry: diffusers' {@code ["library", "Class"]}, or a plain name. */
    private static String componentClass(JsonNode entry, String fallback) {
        if (entry.isArray() && entry.size() == 2) return entry.get(1).asText();
        if (entry.isTextual()) return entry.asText();
        return fallback;
    }

    @Override
    public void saveFolder(TextToImageModel m, Path tmp) throws IOException {
        if (!Denoisers.known().contains(m.denoiser.className()))
            throw new IllegalArgumentException("denoiser class '" + m.denoiser.className() + "' cannot be read back from a folder; known: " + Denoisers.known());
        if (!TextEncoders.known().contains(m.textEncoder.className()))
            throw new IllegalArgumentException("text encoder class '" + m.textEncoder.className() + "' cannot be read back from a folder; known: " + TextEncoders.known());
        m.denoiser.save(tmp.resolve("denoiser"));
        Files.createDirectories(tmp.resolve("scheduler"));
        ObjectMapper om = new ObjectMapper();
        AtomicFiles.writeString(tmp.resolve("scheduler/scheduler_config.json"), om.writerWithDefaultPrettyPrinter().writeValueAsString(m.scheduler.toJson()));
        ObjectNode idx = om.createObjectNode();
        idx.put("_class_name", CLASS_NAME);
        idx.putArray("denoiser").add("pixelpost").add(m.denoiser.className());
        idx.putArray("text_encoder").add("pixelpost").add(m.textEncoder.className());
        idx.put("autoencoder", m.autoencoderSpec).put("max_tokens", m.textEncoder.maxTokens())
            .put("image_size", m.imageSize).put("latent_scale", m.latentScale);
        AtomicFiles.writeString(tmp.resolve("model_index.json"), om.writerWithDefaultPrettyPrinter().writeValueAsString(idx));
    }
}
