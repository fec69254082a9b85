package org.pixelpost.cli;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import org.pixelpost.pipeline.ShapeDetection;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.model.denoiser.DiT;
import java.io.IOException;
import org.pixelpost.io.AtomicFiles;
import org.pixelpost.io.check.InvalidValueException;
import org.pixelpost.model.autoencoder.AutoencoderKL;
import org.pixelpost.model.denoiser.UNet2DCondition;
import org.pixelpost.model.text.ClipTextEncoder;
import org.pixelpost.model.text.ClipTextModel;
import org.pixelpost.pipeline.StableDiffusion;
import org.pixelpost.io.check.Checks;
import org.pixelpost.io.run.OutputDir;
import org.pixelpost.tensor.Engine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

@Command(name = "model", mixinStandardHelpOptions = true, description = "Inspect and create models.",
    subcommands = {ModelCommand.Info.class, ModelCommand.Create.class, ModelCommand.Convert.class})
final class ModelCommand implements Runnable {
    @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    @Command(name = "info", mixinStandardHelpOptions = true,
        description = {"Configuration and parameter count of a named DiT size (tiny, small, S/2, B/2, L/2, XL/2)",
            "or of a model folder, a single file (SD 1.x checkpoint, or an original-layout U-Net, VAE or CLIP text model)",
            "or a component folder (unet/, vae/, text_encoder/ with config.json), compared with the published count where there is one.",
            "Single files and component folders are read from their headers and configs: no weight is loaded."})
    static final class Info implements Callable<Integer> {
        @Parameters(paramLabel = "NAME|DIR|FILE") String name;
        @Option(names = "--json") boolean json;

        @Override
        public Integer call() throws Exception {
            Engine.start();
            Map<String, Object> o = new LinkedHashMap<>();
            Path dir = Paths.get(name);
            Object config;
            long count;
            Map<String, Object> components = new LinkedHashMap<>();
            String what = "denoiser";
            if (Files.exists(dir) && !Files.isRegularFile(dir.resolve("model_index.json"))) {
                // a single file or a component folder: configurations from config.json or from the shapes, nothing loaded
                List<ShapeDetection.Component> parts = ShapeDetection.components(dir);
                for (ShapeDetection.Component c : parts) components.put(c.role(), component(c.className(), c.parameters()));
                ShapeDetection.Component main = parts.get(0);
                config = Json.MAPPER.convertValue(main.config(), Map.class);
                count = main.parameters();
            } else if (Files.exists(dir) && Json.MAPPER.readTree(dir.resolve("model_index.json").toFile()).path("_class_name").asText().equals("PixArtAlphaPipeline")) {
                // PixArt: each component from its config and weight headers, so T5-XXL's 19 GB are not loaded to be counted
                Object cfg = null;
                long n = 0;
                for (String sub : List.of("transformer", "vae", "text_encoder")) {
                    ShapeDetection.Component c = ShapeDetection.components(dir.resolve(sub)).get(0);
                    components.put(c.role(), component(c.className(), c.parameters()));
                    if (sub.equals("transformer")) {
                        cfg = Json.MAPPER.convertValue(c.config(), Map.class);
                        n = c.parameters();
                    }
                }
                config = cfg;
                count = n;
            } else if (Files.exists(dir)) {
                try (TextToImageModel m = TextToImageModel.load(dir)) {
                    config = Json.MAPPER.convertValue(m.denoiser.configJson(), Map.class);
                    count = m.denoiser.module().parameterCount();
                    components.put("denoiser", component(m.denoiser.className(), count));
                    components.put("autoencoder", component(m.autoencoder.name() + " (" + m.autoencoderSpec + ")", m.autoencoder.parameterCount()));
                    components.put("text_encoder", component(m.textEncoder.className(),
                        m.textEncoder.module() != null ? m.textEncoder.module().parameterCount() : null));
                    o.put("image_size", m.imageSize);
                    o.put("prediction_type", m.predictionType().configName);
                }
            } else if (name.equalsIgnoreCase("sd15")) {
                UNet2DCondition.Config u = UNet2DCondition.Config.sd15();
                config = Json.MAPPER.convertValue(u.toJson(), Map.class);
                count = u.parameterCount(); // from the configurations, on the meta device: nothing is allocated
                components.put("denoiser", component(UNet2DCondition.CLASS_NAME, count));
                try (org.pixelpost.nn.Init meta = org.pixelpost.nn.Init.onMeta(); AutoencoderKL vae = new AutoencoderKL(AutoencoderKL.Config.sd())) {
                    components.put("autoencoder", component("AutoencoderKL", vae.parameterCount()));
                }
                components.put("text_encoder", component(ClipTextEncoder.CLASS_NAME, ClipTextModel.Config.vitL14().parameterCount()));
            } else if (name.equalsIgnoreCase("t5-xxl")) {
                // PixArt-alpha's text encoder, from its configuration on the meta device
                org.pixelpost.model.text.T5EncoderModel.Config t = org.pixelpost.model.text.T5EncoderModel.Config.v11Xxl();
                config = Json.MAPPER.convertValue(t.toJson(), Map.class);
                count = t.parameterCount();
                what = "text encoder";
                components.put("text_encoder", component(org.pixelpost.model.text.T5EncoderModel.CLASS_NAME, count));
            } else {
                DiT.Config c = DiT.Config.named(name);
                config = Json.MAPPER.convertValue(c.toJson(), Map.class);
                count = c.parameterCount(); // from the configuration: nothing is allocated
                components.put("denoiser", component("DiT", count));
            }
            o.put("components", components);
            o.put("name", name);
            o.put("config", config);
            o.put("parameters", count);
            Long published = DiT.PUBLISHED.get(name.toLowerCase(java.util.Locale.ROOT));
            if (published != null) {
                o.put("published_parameters", published);
                o.put("matches_published", published == count);
            }
            if (json) System.out.println(Json.write(o));
            else {
                System.out.printf("%s: %,d %s parameters%n", name, count, what);
                components.forEach((k, v) -> {
                    Map<?, ?> cm = (Map<?, ?>) v;
                    System.out.printf("  %-13s %-32s %s%n", k, cm.get("class"), cm.get("parameters") == null ? "" : String.format("%,d", (Long) cm.get("parameters")));
                });
                if (published != null) System.out.printf("published (%s): %,d  %s%n", name.toLowerCase(java.util.Locale.ROOT).equals("pixart-1024") ? "PixArt-XL-2-1024-MS" : "PixArt-alpha XL/2",
                    published, published == count ? "(match)" : "(differs)");
                System.out.println(Json.write(o.get("config")));
            }
            return 0;
        }
    }

    static Map<String, Object> component(String cls, Long parameters) {
        Map<String, Object> c = new LinkedHashMap<>();
        c.put("class", cls);
        c.put("parameters", parameters);
        return c;
    }

    @Command(name = "convert", mixinStandardHelpOptions = true,
        description = {"Convert a Stable Diffusion or PixArt-alpha model between a diffusers folder and its original single file.",
            "A folder becomes one .safetensors file with the original names (SD: LDM names; PixArt: the transformer's);",
            "a single file becomes a diffusers folder (a PixArt file takes its T5, tokenizer and VAE from --configs)."})
    static final class Convert implements Callable<Integer> {
        @Option(names = "--model", required = true, description = "a diffusers SD or PixArt folder, an SD 1.x single file (.safetensors, .ckpt) or a PixArt original (.pth, .safetensors)") Path model;
        @Option(names = "--out", required = true, description = "the single file (from a folder) or the new folder (from a file)") Path out;
        @Option(names = "--configs", description = {"SD: a diffusers folder whose component configs describe a single file whose shapes do not fix its configuration;",
            "PixArt: the PixArt folder whose text_encoder/, tokenizer/ and vae/ an original file takes"}) Path configs;
        @Option(names = "--overwrite", description = "replace what --out holds") boolean overwrite;

        @Override
        public Integer call() throws Exception {
            Engine.start();
            org.pixelpost.pipeline.LoadOptions opts = org.pixelpost.pipeline.LoadOptions.defaults();
            if (configs != null) opts = opts.withConfigs(configs);
            boolean toFile = Files.isDirectory(model);
            Path in = real(model), target = real(out);
            if (toFile && target.startsWith(in))
                throw new InvalidValueException("--out", out + " is inside the input folder " + model + "; write the single file elsewhere");
            if (!toFile && in.startsWith(target))
                throw new InvalidValueException("--out", out + " holds the input file " + model + "; choose a new folder");
            if (!toFile && Files.isDirectory(out) && !OutputDir.isEmpty(out) && !Files.isRegularFile(out.resolve("model_index.json")))
                throw new InvalidValueException("--out", out + " holds files that are not a model; --overwrite replaces a model folder only, so choose a new folder");
            if (toFile) {
                if (Files.isDirectory(out)) throw new InvalidValueException("--out", out + " is a folder; a single file is written from a folder");
                if (Files.exists(out) && !overwrite) throw new InvalidValueException("--out", out + " exists; pass --overwrite to replace it");
            }
            boolean created = !toFile && OutputDir.prepare(out, "--out", OutputDir.Existing.MUST_BE_EMPTY, overwrite);
            try (TextToImageModel m = TextToImageModel.load(model, opts)) {
                if (!m.family().hasSingleFile()) throw new InvalidValueException("--model", model + " has no single-file layout (a " + m.family().displayName() + " model)");
                if (toFile) m.saveSingleFile(out);
                else m.save(out);
            } catch (IOException | RuntimeException e) {
                if (created) AtomicFiles.deleteTree(out); // only a folder this command created
                throw e;
            }
            System.out.printf("%s -> %s%n", model, out);
            return 0;
        }
    }

    /** The path with symbolic links resolved as far as it exists (the rest appended), for comparing locations. */
    static Path real(Path p) throws IOException {
        Path abs = p.toAbsolutePath().normalize(), existing = abs;
        while (existing != null && !Files.exists(existing)) existing = existing.getParent();
        if (existing == null) return abs;
        return existing.toRealPath().resolve(existing.relativize(abs));
    }

    @Command(name = "create", mixinStandardHelpOptions = true, description = "Write a new, randomly initialised text-to-image model folder.")
    static final class Create implements Callable<Integer> {
        @Option(names = "--size", defaultValue = "tiny", description = "DiT size (default: ${DEFAULT-VALUE})") String size;
        @Option(names = "--autoencoder", defaultValue = "taef2", description = "default: ${DEFAULT-VALUE}") String autoencoder;
        @Option(names = "--image-size", defaultValue = "64", description = "default: ${DEFAULT-VALUE}") int imageSize;
        @Option(names = "--latent-scale", defaultValue = "1.0", description = "diffusion runs on scale * latent (default: ${DEFAULT-VALUE})") double latentScale;
        @Option(names = "--seed", description = "seed of the initial weights (default: a random one, printed)") Long seed;
        @Option(names = "--out", required = true, description = "the new model folder (must be empty or absent)") Path out;
        @Option(names = "--overwrite", description = "replace what --out holds") boolean overwrite;

        @Override
        public Integer call() throws Exception {
            Checks.positive("--latent-scale", latentScale);
            Checks.atLeast("--image-size", imageSize, 8);
            DiT.Config.named(size); // an unknown size is refused before anything is written
            boolean created = OutputDir.prepare(out, "--out", OutputDir.Existing.MUST_BE_EMPTY, overwrite);
            long s = seed != null ? seed : new java.security.SecureRandom().nextLong();
            Engine.seed(s);
            try (TextToImageModel m = TextToImageModel.create(size, autoencoder, imageSize, latentScale)) {
                m.save(out);
                System.out.printf("%s DiT (%,d parameters) over %s written to %s (seed %d)%n", size, m.denoiser.module().parameterCount(), autoencoder, out, s);
            } catch (IOException | RuntimeException e) {
                if (created) AtomicFiles.deleteTree(out); // only a folder this command created
                throw e;
            }
            return 0;
        }
    }
}
