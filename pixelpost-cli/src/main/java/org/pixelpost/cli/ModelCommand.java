package org.pixelpost.cli;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.model.denoiser.DiT;
import java.io.IOException;
import org.pixelpost.io.AtomicFiles;
import org.pixelpost.io.Checks;
import org.pixelpost.io.OutputDir;
import org.pixelpost.tensor.Engine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

@Command(name = "model", mixinStandardHelpOptions = true, description = "Inspect and create models.",
    subcommands = {ModelCommand.Info.class, ModelCommand.Create.class})
final class ModelCommand implements Runnable {
    @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    @Command(name = "info", mixinStandardHelpOptions = true,
        description = {"Configuration and parameter count of a named DiT size (tiny, small, S/2, B/2, L/2, XL/2)",
            "or of a model folder, compared with the published count where there is one."})
    static final class Info implements Callable<Integer> {
        @Parameters(paramLabel = "NAME|DIR") String name;
        @Option(names = "--json") boolean json;

        @Override
        public Integer call() throws Exception {
            Engine.start();
            Map<String, Object> o = new LinkedHashMap<>();
            Path dir = Paths.get(name);
            Object config;
            long count;
            if (Files.isDirectory(dir)) {
                try (TextToImageModel m = TextToImageModel.load(dir)) {
                    config = Json.MAPPER.convertValue(m.denoiser.configJson(), Map.class);
                    count = m.denoiser.module().parameterCount();
                    o.put("denoiser", m.denoiser.className());
                    o.put("autoencoder", m.autoencoderSpec);
                    o.put("text_encoder", m.textEncoder.name());
                    o.put("image_size", m.imageSize);
                }
            } else {
                DiT.Config c = DiT.Config.named(name);
                config = Json.MAPPER.convertValue(c.toJson(), Map.class);
                count = c.parameterCount(); // from the configuration: nothing is allocated
            }
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
                System.out.printf("%s: %,d parameters%n", name, count);
                if (published != null) System.out.printf("published (PixArt-alpha XL/2): %,d  %s%n", published, published == count ? "(match)" : "(differs)");
                System.out.println(Json.write(o.get("config")));
            }
            return 0;
        }
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
