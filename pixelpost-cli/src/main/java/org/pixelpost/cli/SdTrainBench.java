package org.pixelpost.cli;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.model.autoencoder.Autoencoder;
import org.pixelpost.model.autoencoder.AutoencoderKL;
import org.pixelpost.model.autoencoder.TinyAutoencoder;
import org.pixelpost.model.denoiser.UNet2DCondition;
import org.pixelpost.objective.Batch;
import org.pixelpost.objective.Loss;
import org.pixelpost.objective.PixelDecode;
import org.pixelpost.objective.PixelTerm;
import org.pixelpost.objective.Sft;
import org.pixelpost.objective.StepContext;
import org.pixelpost.pipeline.StableDiffusion;
import org.pixelpost.tensor.Autocast;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * A training step at Stable Diffusion 1.5's exact shapes (random weights: no SD weights are needed):
 * the U-Net's forward and backward, with the pixel term through the full SD VAE decoder or TAESD,
 * with and without gradient checkpointing, and in bf16. Each row runs in its own JVM so that its
 * peak resident memory is its own; a row that runs out of memory is reported as such.
 */
final class SdTrainBench {
    /** The rows: name, pixel decoder (none, vae, taesd), checkpointing, bf16. */
    record Row(String name, String decoder, boolean checkpoint, boolean bf16) {}

    static final List<Row> ROWS = List.of(
        new Row("latent", "none", false, false),
        new Row("latent+pixel", "vae", false, false),
        new Row("latent+pixel, checkpointing", "vae", true, false),
        new Row("latent+pixel via TAESD", "taesd", false, false),
        new Row("latent+pixel via TAESD, checkpointing", "taesd", true, false),
        new Row("latent, bf16", "none", false, true),
        new Row("latent+pixel, checkpointing, bf16", "vae", true, true));

    private SdTrainBench() {}

    /** Runs every row in a child JVM and returns their results. */
    static List<Map<String, Object>> all(int size, int iters, int warmup) throws Exception {
        List<Map<String, Object>> out = new ArrayList<>();
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        for (int i = 0; i < ROWS.size(); i++) {
            Process p = new ProcessBuilder(java, "-Xmx2g", "-Dorg.bytedeco.javacpp.maxPhysicalBytes=0", "-cp", System.getProperty("java.class.path"), "org.pixelpost.cli.Main",
                "bench", "train", "--model", "sd15-shapes", "--row", Integer.toString(i), "--size", Integer.toString(size),
                "--iters", Integer.toString(iters), "--warmup", Integer.toString(warmup), "--json").redirectError(ProcessBuilder.Redirect.INHERIT).start();
            String json = new String(p.getInputStream().readAllBytes()).strip();
            int code = p.waitFor();
            Map<String, Object> r = new LinkedHashMap<>();
            r.put("row", ROWS.get(i).name());
            if (code == 0 && json.startsWith("{")) {
                r.putAll(Json.MAPPER.readValue(json, Map.class));
            } else {
                r.put("error", code == 137 ? "killed (out of memory)" : "exit " + code);
            }
            System.err.println(Json.write(r));
            out.add(r);
        }
        return out;
    }

    /** One row in this process: seconds per step (median of {@code iters} after {@code warmup} steps) and peak RSS. */
    static Map<String, Object> one(int index, int size, int iters, int warmup) {
        Row row = ROWS.get(index);
        Engine.seed(0);
        UNet2DCondition.Config uc = UNet2DCondition.Config.sd15();
        int latent = size / 8;
        Map<String, Object> o = new LinkedHashMap<>();
        try (UNet2DCondition unet = new UNet2DCondition(uc); Generator gen = Generator.seeded(1);
             Autoencoder decoder = switch (row.decoder()) {
                 case "vae" -> new AutoencoderKL(AutoencoderKL.Config.sd());
                 case "taesd" -> new TinyAutoencoder(new TinyAutoencoder.Variant("taesd", 4, false));
                 default -> null;
             }) {
            unet.gradientCheckpointing(row.checkpoint());
            Tensor z, tokens, mask;
            try (Generator g = Generator.seeded(2)) {
                z = g.randn(1, 4, latent, latent);
                tokens = g.randn(1, 77, 768);
            }
            mask = org.bytedeco.pytorch.global.torch.ones(1, 77).to(org.bytedeco.pytorch.global.torch.ScalarType.Bool);
            for (Tensor t : List.of(z, tokens, mask)) t.retainReference();
            StepContext ctx = decoder == null
                ? new StepContext(unet, StableDiffusion.scheduler(null).schedule(), org.pixelpost.schedule.PredictionType.EPSILON, x -> x, gen)
                : new StepContext(unet, StableDiffusion.scheduler(null).schedule(), org.pixelpost.schedule.PredictionType.EPSILON, decoder::decode, gen,
                    decoder::decodeRecomputed);
            Sft objective = new Sft(1, decoder == null ? PixelTerm.off() : new PixelTerm(1, PixelDecode.T, 1, 0, 1, 0, row.checkpoint()));
            Batch batch = Batch.of(z, tokens, mask);
            double[] t = new double[iters];
            for (int i = 0; i < warmup + iters; i++) {
                try (Scope s = Scope.open()) {
                    long t0 = System.nanoTime();
                    Loss l;
                    try (Autocast a = Autocast.bf16(row.bf16())) {
                        l = objective.loss(ctx, batch);
                    }
                    l.loss().backward();
                    unet.finishBackward();
                    for (Tensor p : unet.parameters().values()) if (p.grad().defined()) p.grad().zero_();
                    if (i >= warmup) t[i - warmup] = (System.nanoTime() - t0) / 1e9;
                }
            }
            java.util.Arrays.sort(t);
            o.put("size", size);
            o.put("batch", 1);
            o.put("threads", Engine.threads());
            o.put("timed_steps", iters);
            o.put("warmup_steps", warmup);
            o.put("seconds_per_step", Math.round(t[iters / 2] * 100) / 100.0);
            o.put("peak_rss_mib", Math.round(BenchCommand.peakRssMiB()));
            o.put("note", "forward and backward of one sample; no optimizer update (AdamW adds two fp32 copies of the U-Net, 6.9 GB)");
        }
        return o;
    }
}
