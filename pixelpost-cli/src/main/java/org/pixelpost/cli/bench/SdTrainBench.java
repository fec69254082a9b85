package org.pixelpost.cli.bench;

import org.pixelpost.cli.Json;
import org.pixelpost.cli.Launcher;
import org.pixelpost.cli.TrainCommand;
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
import org.pixelpost.model.denoiser.Denoiser;
import org.pixelpost.model.denoiser.Denoisers;
import org.pixelpost.nn.Lora;
import org.pixelpost.objective.Batch;
import org.pixelpost.objective.Dpo;
import org.pixelpost.objective.Objective;
import org.pixelpost.lora.LoraTargets;
import org.pixelpost.train.AdamW;
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
    /**
     * The rows: name, pixel decoder (none, vae, taesd), checkpointing, bf16, LoRA rank (0: the whole
     * U-Net), DPO (a pair per step against a reference) or SFT, and whether the step includes the
     * AdamW update (the LoRA rows do, to compare with full fine-tuning's optimizer state).
     */
    record Row(String name, String decoder, boolean checkpoint, boolean bf16, int loraRank, boolean dpo, boolean optimizer) {
        Row(String name, String decoder, boolean checkpoint, boolean bf16) {
            this(name, decoder, checkpoint, bf16, 0, false, false);
        }
    }

    static final List<Row> ROWS = List.of(
        new Row("latent", "none", false, false),
        new Row("latent+pixel", "vae", false, false),
        new Row("latent+pixel, checkpointing", "vae", true, false),
        new Row("latent+pixel via TAESD", "taesd", false, false),
        new Row("latent+pixel via TAESD, checkpointing", "taesd", true, false),
        new Row("latent, bf16", "none", false, true),
        new Row("latent+pixel, checkpointing, bf16", "vae", true, true),
        new Row("full fine-tuning + AdamW, latent", "none", false, false, 0, false, true),
        new Row("LoRA r16 + AdamW, latent", "none", false, false, 16, false, true),
        new Row("LoRA r16 + AdamW, latent+pixel via TAESD", "taesd", false, false, 16, false, true),
        new Row("full DPO + AdamW (reference: a 2nd U-Net)", "none", false, false, 0, true, true),
        new Row("LoRA r16 DPO + AdamW (reference: adapters off)", "none", false, false, 16, true, true));

    /** PixArt-alpha XL/2 at 512 (120 T5-XXL tokens, masked): latent only, with the pixel term through the SD VAE (checkpointed), LoRA. */
    static final List<Row> PIXART_ROWS = List.of(
        new Row("PixArt XL/2: latent", "none", false, false),
        new Row("PixArt XL/2: latent+pixel (SD VAE), checkpointing", "vae", true, false),
        new Row("PixArt XL/2: LoRA r16 + AdamW, latent", "none", false, false, 16, false, true),
        new Row("PixArt XL/2: LoRA r16 + AdamW, latent+pixel (SD VAE), checkpointing", "vae", true, false, 16, false, true));

    static List<Row> rows(String model) {
        return model.equals("pixart-shapes") ? PIXART_ROWS : ROWS;
    }

    private SdTrainBench() {}

    /** Runs every row in a child JVM and returns their results. */
    static List<Map<String, Object>> all(int size, int iters, int warmup, List<Integer> rows) throws Exception {
        return all("sd15-shapes", size, iters, warmup, rows);
    }

    /** As {@link #all(int, int, int, List)} for {@code model} (sd15-shapes or pixart-shapes). */
    static List<Map<String, Object>> all(String model, int size, int iters, int warmup, List<Integer> rows) throws Exception {
        List<Map<String, Object>> out = new ArrayList<>();
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        for (int i : rows) {
            Process p = new ProcessBuilder(java, "-Xmx2g", "-Dorg.bytedeco.javacpp.maxPhysicalBytes=0", "-cp", System.getProperty("java.class.path"), "org.pixelpost.cli.Main",
                "bench", "train", "--model", model, "--row", Integer.toString(i), "--image-size", Integer.toString(size),
                "--iters", Integer.toString(iters), "--warmup", Integer.toString(warmup), "--json").redirectError(ProcessBuilder.Redirect.INHERIT).start();
            String json = new String(p.getInputStream().readAllBytes()).strip();
            int code = p.waitFor();
            Map<String, Object> r = new LinkedHashMap<>();
            r.put("row", rows(model).get(i).name());
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

    /** Puts rank-{@code r} adapters on the default targets once (rank 0: the whole U-Net trains). */
    private static UNet2DCondition lora(UNet2DCondition unet, int r, Generator g) {
        if (r > 0 && Lora.adapters(unet).isEmpty()) Lora.attach(unet, LoraTargets.of(LoraTargets.DEFAULT), r, r, 0, g);
        return unet;
    }

    /** The row's setting and its median step time ({@code t} is sorted here) and peak RSS. */
    private static void timings(Map<String, Object> o, int size, int iters, int warmup, double[] t) {
        java.util.Arrays.sort(t);
        o.put("size", size);
        o.put("batch", 1);
        o.put("threads", Engine.threads());
        o.put("timed_steps", iters);
        o.put("warmup_steps", warmup);
        o.put("seconds_per_step", Math.round(t[iters / 2] * 100) / 100.0);
        o.put("peak_rss_mib", Math.round(BenchCommand.peakRssMiB()));
    }

    /** One PixArt row: XL/2 at {@code size} over 120 masked T5-XXL-wide tokens (random), SD's VAE decoder for the pixel term. */
    static Map<String, Object> onePixArt(int index, int size, int iters, int warmup) {
        Row row = PIXART_ROWS.get(index);
        Engine.seed(0);
        org.pixelpost.model.denoiser.DiT.Config dc = org.pixelpost.model.denoiser.DiT.Config.named("pixart-512").withLatent(4, size / 8);
        Map<String, Object> o = new LinkedHashMap<>();
        try (org.pixelpost.model.denoiser.DiT dit = new org.pixelpost.model.denoiser.DiT(dc); Generator gen = Generator.seeded(1);
             Autoencoder decoder = row.decoder().equals("vae") ? new AutoencoderKL(AutoencoderKL.Config.sd()) : null) {
            if (row.loraRank() > 0) {
                Lora.attach(dit, LoraTargets.of(List.of("attention"), org.pixelpost.pipeline.Families.byClassName("PixArtAlphaPipeline")), row.loraRank(), row.loraRank(), 0, gen);
            }
            AdamW opt = !row.optimizer() ? null : new AdamW(dit.trainableParameters(), 0.9, 0.999, 1e-8, 0);
            dit.gradientCheckpointing(row.checkpoint());
            if (decoder != null) decoder.decoder().gradientCheckpointing(row.checkpoint());
            Tensor z, tokens, mask;
            try (Generator g = Generator.seeded(2)) {
                z = g.randn(1, 4, size / 8, size / 8);
                tokens = g.randn(1, 120, 4096);
            }
            float[] m = new float[120];
            java.util.Arrays.fill(m, 0, 24, 1); // a 23-token prompt and </s>, padded to 120 as PixArt pads
            mask = Tensors.fromFloats(m, 1, 120).to(org.bytedeco.pytorch.global.torch.ScalarType.Bool);
            for (Tensor t : List.of(z, tokens, mask)) t.retainReference();
            org.pixelpost.schedule.NoiseSchedule schedule = org.pixelpost.pipeline.Families.byClassName("PixArtAlphaPipeline").defaultScheduler().schedule();
            StepContext ctx = new StepContext(dit, schedule, org.pixelpost.schedule.PredictionType.EPSILON, decoder == null ? x -> x : decoder::decode, gen);
            Objective objective = new Sft(1, decoder == null ? PixelTerm.off() : PixelTerm.of(1));
            Batch batch = Batch.of(z, tokens, mask);
            double[] t = new double[iters];
            for (int i = 0; i < warmup + iters; i++) {
                try (Scope s = Scope.open()) {
                    long t0 = System.nanoTime();
                    objective.loss(ctx, batch).loss().backward();
                    if (opt != null) opt.step(1e-6);
                    for (Tensor p : dit.parameters().values()) if (p.grad().defined()) p.grad().zero_();
                    if (i >= warmup) t[i - warmup] = (System.nanoTime() - t0) / 1e9;
                }
            }
            if (opt != null) opt.close();
            timings(o, size, iters, warmup, t);
            o.put("trainable_parameters", dit.trainableParameters().values().stream().mapToLong(Tensor::numel).sum());
            o.put("note", "forward and backward of one sample" + (opt != null ? ", then the AdamW update" : "; no optimizer update"));
        }
        return o;
    }

    private static Denoiser frozenCopy(UNet2DCondition.Config uc) {
        Engine.seed(0); // the same initial weights as the trained U-Net
        UNet2DCondition r = new UNet2DCondition(uc);
        r.freeze();
        return r;
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
             };
             // full DPO holds a second, frozen U-Net; LoRA DPO the same U-Net with its adapters off
             Denoiser reference = !row.dpo() ? null : row.loraRank() > 0 ? Denoisers.withoutAdapters(lora(unet, row.loraRank(), gen)) : frozenCopy(uc);
             AdamW opt = !row.optimizer() ? null : new AdamW(lora(unet, row.loraRank(), gen).trainableParameters(), 0.9, 0.999, 1e-8, 0)) {
            unet.gradientCheckpointing(row.checkpoint());
            if (decoder != null) decoder.decoder().gradientCheckpointing(row.checkpoint());
            Tensor z, zLoser, tokens, mask;
            try (Generator g = Generator.seeded(2)) {
                z = g.randn(1, 4, latent, latent);
                zLoser = g.randn(1, 4, latent, latent);
                tokens = g.randn(1, 77, 768);
            }
            mask = org.bytedeco.pytorch.global.torch.ones(1, 77).to(org.bytedeco.pytorch.global.torch.ScalarType.Bool);
            for (Tensor t : List.of(z, zLoser, tokens, mask)) t.retainReference();
            StepContext ctx = decoder == null
                ? new StepContext(unet, StableDiffusion.scheduler(null).schedule(), org.pixelpost.schedule.PredictionType.EPSILON, x -> x, gen)
                : new StepContext(unet, StableDiffusion.scheduler(null).schedule(), org.pixelpost.schedule.PredictionType.EPSILON, decoder::decode, gen);
            PixelTerm pixel = decoder == null ? PixelTerm.off() : PixelTerm.of(1);
            Objective objective = row.dpo() ? new Dpo(reference, 2500, 1, pixel) : new Sft(1, pixel);
            Batch batch = row.dpo() ? Batch.pairs(z, zLoser, tokens, mask) : Batch.of(z, tokens, mask);
            double[] t = new double[iters];
            for (int i = 0; i < warmup + iters; i++) {
                try (Scope s = Scope.open()) {
                    long t0 = System.nanoTime();
                    Loss l;
                    try (Autocast a = Autocast.bf16(row.bf16())) {
                        l = objective.loss(ctx, batch);
                    }
                    l.loss().backward();
                    if (opt != null) opt.step(1e-6);
                    for (Tensor p : unet.parameters().values()) if (p.grad().defined()) p.grad().zero_();
                    if (i >= warmup) t[i - warmup] = (System.nanoTime() - t0) / 1e9;
                }
            }
            timings(o, size, iters, warmup, t);
            o.put("trainable_parameters", unet.trainableParameters().values().stream().mapToLong(Tensor::numel).sum());
            o.put("note", (row.dpo() ? "forward and backward of one pair (winner and loser) and the reference's forward on both"
                : "forward and backward of one sample") + (opt != null ? ", then the AdamW update" : "; no optimizer update (AdamW adds two fp32 copies of the U-Net, 6.9 GB)"));
        }
        return o;
    }
}
