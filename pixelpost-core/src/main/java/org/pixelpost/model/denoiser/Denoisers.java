package org.pixelpost.model.denoiser;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.TreeMap;
import org.pixelpost.io.check.BadFileException;

/** Builds a denoiser from a folder by the class name its {@code config.json} (or the model index) gives. */
public final class Denoisers {
    private Denoisers() {}

    /** Loads a denoiser folder. */
    @FunctionalInterface
    public interface Loader {
        Denoiser load(Path dir) throws IOException;
    }

    /** Class name -> loader: adding a denoiser kind is one line here. */
    private static final Map<String, Loader> REGISTRY = new TreeMap<>(Map.of(
        "DiT", DiT::load,
        UNet2DCondition.CLASS_NAME, UNet2DCondition::load,
        DiT.PIXART_CLASS, DiT::load,
        "Transformer2DModel", DiT::load)); // diffusers' older class name for PixArt's transformer

    /**
     * The same denoiser with its LoRA adapters switched off for each forward: the base model, without
     * a second copy of its weights (DPO's reference in a LoRA run).
     */
    public static Denoiser withoutAdapters(Denoiser d) {
        return new Denoiser() {
            @Override
            public org.bytedeco.pytorch.Tensor forward(org.bytedeco.pytorch.Tensor zT, org.bytedeco.pytorch.Tensor t, org.pixelpost.model.Conditioning cond) {
                java.util.Map<String, org.pixelpost.nn.Lora.Adapter> adapters = org.pixelpost.nn.Lora.adapters(d.module());
                java.util.Map<String, Boolean> was = new java.util.HashMap<>();
                adapters.forEach((k, a) -> was.put(k, a.enabled()));
                org.pixelpost.nn.Lora.enable(d.module(), false);
                try {
                    return d.forward(zT, t, cond);
                } finally {
                    adapters.forEach((k, a) -> a.enabled(was.get(k))); // as they were (merged adapters stay off)
                }
            }

            @Override public org.pixelpost.nn.Module module() { return d.module(); }
            @Override public String className() { return d.className(); }
            @Override public com.fasterxml.jackson.databind.node.ObjectNode configJson() { return d.configJson(); }
            @Override public void save(Path dir) throws IOException { d.save(dir); }
            @Override public void close() {} // the weights belong to d
        };
    }

    public static java.util.Set<String> known() {
        return REGISTRY.keySet();
    }

    /**
     * Loads {@code dir} as {@code className}; a null class name is read from {@code dir/config.json}'s
     * {@code _class_name}.
     */
    public static Denoiser load(Path dir, String className) throws IOException {
        String cls = className;
        if (cls == null) {
            Path cfg = dir.resolve("config.json");
            if (!Files.isRegularFile(cfg)) throw new BadFileException(dir, "no config.json: not a denoiser folder");
            JsonNode j;
            try {
                j = new ObjectMapper().readTree(cfg.toFile());
            } catch (IOException e) {
                throw new BadFileException(cfg, "malformed JSON (" + e.getMessage() + ")");
            }
            cls = j.path("_class_name").asText("DiT");
        }
        Loader l = REGISTRY.get(cls);
        if (l == null) throw new BadFileException(dir, "denoiser class '" + cls + "' is not built here; known: " + known());
        return l.load(dir);
    }
}
