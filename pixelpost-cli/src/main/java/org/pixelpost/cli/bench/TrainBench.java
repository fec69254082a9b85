package org.pixelpost.cli.bench;

import org.pixelpost.cli.Json;
import org.pixelpost.cli.Launcher;
import org.pixelpost.cli.TrainCommand;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.function.UnaryOperator;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.model.text.TextEncoder;
import org.pixelpost.objective.PixelDecode;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;
import org.pixelpost.train.AdamW;
import org.pixelpost.train.Trainer;
import org.pixelpost.io.check.Checks;
import org.pixelpost.objective.Batch;
import org.pixelpost.objective.Loss;
import org.pixelpost.objective.PixelTerm;
import org.pixelpost.objective.Sft;
import org.pixelpost.objective.StepContext;
import org.pixelpost.tensor.Generator;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "train", mixinStandardHelpOptions = true,
    description = {"Cost of the pixel term on the tiny DiT + TAEF2 at 64x64: ms per training step latent-only and",
        "latent+pixel, the decoder's own forward and forward+backward on the same batch, peak RSS, and the cost",
        "options (pixel term on part of the batch, on latent crops, chunked decoder) with their effect on the gradient."})
final class TrainBench implements Callable<Integer> {
    @Option(names = "--batch", defaultValue = "8") int batch;
    @Option(names = "--iters", defaultValue = "10") int iters;
    @Option(names = "--size", defaultValue = "tiny") String size;
    @Option(names = "--json") boolean json;
    @Option(names = "--model", defaultValue = "tiny", description = {"tiny (the DiT over TAEF2 at 64x64), sd15-shapes (SD 1.5's U-Net and VAE, random weights),",
        "or pixart-shapes (PixArt-alpha XL/2 with 120 T5-XXL-wide tokens and SD's VAE, random weights)"})
    String model;
    @Option(names = "--row", defaultValue = "-1", hidden = true) int row;
    @Option(names = "--warmup", defaultValue = "1", description = "sd15-shapes: untimed steps first (default: ${DEFAULT-VALUE})") int warmup;
    @Option(names = "--rows", split = ",", description = "sd15-shapes: the rows to run, by number from 0 (default: all; 7-11 compare full fine-tuning, LoRA and DPO with AdamW)")
    List<Integer> rows;
    @Option(names = "--image-size", defaultValue = "512", description = "sd15-shapes: image size (default: ${DEFAULT-VALUE})") int imageSize;
    @Option(names = "--profile", paramLabel = "FILE", description = {"tiny: time one latent + pixel training step phase by phase, the decoder layer by",
        "layer (forward and backward), and the fixed costs of a call from Java; write the table to FILE"})
    java.nio.file.Path profile;
    @Option(names = "--bf16", description = "tiny: time every row under bf16 autocast (weights stay fp32)") boolean bf16;
    @Option(names = "--bf16-curve", paramLabel = "STEPS", defaultValue = "0", description = {"tiny: train the same model from the same start",
        "for STEPS latent + pixel steps in fp32 and under bf16 autocast, and compare the two loss curves"})
    int bf16Curve;
    @Option(names = "--no-options", description = "tiny: time the four main rows only, not the cost options") boolean noOptions;
    @Option(names = "--save-step", paramLabel = "FILE", description = {"tiny: write the step's weights, inputs, draws and resulting losses to a safetensors",
        "file, so that another implementation (bench/pytorch_twin.py) can check it computes the same step"})
    java.nio.file.Path saveStep;
    @Option(names = "--nproc-per-node", paramLabel = "N", defaultValue = "1", description = {"tiny: the training step in N data-parallel worker processes",
        "(Gloo on loopback), --batch per process: ms per step with and without the gradient all-reduce, and its share"})
    int nprocPerNode;
    @Option(names = "--concurrent-micro-batches", paramLabel = "N", defaultValue = "1", description = {"tiny: also time the latent and pixel steps",
        "through the trainer with the batch as N micro-batches, one after another and N at once on their own threads"})
    int concurrent;
    @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() throws Exception {
        if (model.equals("sd15-shapes") || model.equals("pixart-shapes")) {
            if (concurrent != 1) throw new org.pixelpost.io.check.InvalidValueException("--concurrent-micro-batches", "is for --model tiny");
            Checks.atLeast("--iters", iters, 1);
            if (imageSize % 64 != 0) throw new org.pixelpost.io.check.InvalidValueException("--image-size", imageSize + " is not a multiple of 64");
            if (row >= 0) {
                System.out.println(Json.write(model.equals("pixart-shapes") ? SdTrainBench.onePixArt(row, imageSize, iters, warmup)
                    : SdTrainBench.one(row, imageSize, iters, warmup)));
                return 0;
            }
            List<SdTrainBench.Row> all = SdTrainBench.rows(model);
            List<Integer> which = this.rows != null ? this.rows : java.util.stream.IntStream.range(0, all.size()).boxed().toList();
            for (int i : which)
                if (i < 0 || i >= all.size())
                    throw new org.pixelpost.io.check.InvalidValueException("--rows", i + " is not a row (0 to " + (all.size() - 1) + ")");
            List<Map<String, Object>> results = SdTrainBench.all(model, imageSize, iters, warmup, which);
            if (json) System.out.println(Json.write(results));
            else for (Map<String, Object> r : results) System.out.printf("%-50s %8s s/step  peak RSS %s MiB%n", r.get("row"),
                r.getOrDefault("seconds_per_step", "-"), r.getOrDefault("peak_rss_mib", r.getOrDefault("error", "-")));
            return 0;
        }
        if (!model.equals("tiny")) throw new org.pixelpost.io.check.InvalidValueException("--model", "'" + model + "' is not tiny, sd15-shapes or pixart-shapes");
        if (concurrent < 1 || batch % concurrent != 0)
            throw new org.pixelpost.io.check.InvalidValueException("--concurrent-micro-batches", concurrent + " must be positive and divide --batch " + batch);
        org.pixelpost.train.DataParallel.Env env = org.pixelpost.train.DataParallel.Env.from(System.getenv());
        if (nprocPerNode > 1 && env == null)
            return Launcher.run(nprocPerNode, TrainCommand.workerArgs(spec.commandLine().getParseResult().originalArgs()), 60);
        if (env != null && env.worldSize() > 1) {
            Checks.atLeast("--iters", iters, 1);
            Launcher.watchLauncher();
            Map<String, Object> r = DataParallelBench.run(env, size, batch, iters);
            if (env.rank() == 0) {
                if (json) System.out.println(Json.write(r));
                else r.forEach((k, v) -> System.out.printf("%-22s %s%n", k, v));
            }
            return 0;
        }
        if (bf16Curve > 0) {
            Map<String, Object> c = Bf16Curve.run(size, batch, bf16Curve);
            if (json) System.out.println(Json.write(c));
            else c.forEach((k, v) -> System.out.printf("%-28s %s%n", k, v));
            return 0;
        }
        // the peak is float32's, so it is measured before autocast opens (and only where the rows are timed)
        Map<String, Object> f = profile == null && saveStep == null ? BenchCommand.gemmPeaks() : null;
        Engine.seed(0);
        try (TextToImageModel m = TextToImageModel.create(size, "taef2", 64, 1.0); Generator gen = Generator.seeded(0);
             org.pixelpost.tensor.Autocast autocast = org.pixelpost.tensor.Autocast.bf16(bf16);
             AdamW opt = new AdamW(m.denoiser.module().parameters(), 0.9, 0.999, 1e-8, 5e-6)) {
            UnaryOperator<Tensor> decode = m::decodeLatents;
            StepContext ctx = new StepContext(m.denoiser, m.noiseSchedule(), m.predictionType(), decode, gen);

            if (profile != null) {
                String table = Profile.of(m, opt, ctx, iters, batch);
                org.pixelpost.io.AtomicFiles.writeString(profile, table);
                System.out.print(table);
                return 0;
            }
            if (saveStep != null) {
                saveStep(m, ctx, saveStep);
                return 0;
            }
            Map<String, Object> o = new LinkedHashMap<>();
            double latentMs = stepMs(m, opt, ctx, sft(0, 1, 0, 0));
            Tensor z = this.z;
            double pixelMs = stepMs(m, opt, ctx, sft(8, 1, 0, 0));
            double decodeMs, decodeBackMs;
            try (var g = Tensors.noGrad()) {
                decodeMs = BenchCommand.medianMs(2, iters, () -> decode.apply(z));
            }
            Tensor r = torch.randn(batch, 3, 64, 64);
            decodeBackMs = BenchCommand.medianMs(2, iters, () -> decode.apply(z.detach().set_requires_grad(true)).mul(r).sum().backward());
            o.put("denoiser", size);
            o.put("batch", batch);
            o.put("precision", bf16 ? "bf16 autocast" : "fp32");
            o.put("text_tokens", tokens.size(1));
            o.put("threads", Engine.threads());
            o.put("latent_ms", round(latentMs));
            o.put("pixel_ms", round(pixelMs));
            o.put("ratio", round(pixelMs / latentMs));
            o.put("decode_ms", round(decodeMs));
            o.put("decode_backward_ms", round(decodeBackMs));
            o.put("pixel_overhead_vs_decoder", round((pixelMs - latentMs) / (decodeMs + decodeBackMs)));
            // work per row (backward 2x forward; through the frozen decoder only the input's gradient: 1x)
            double peak = (double) f.get("gemm_peak_gflops");
            double dit = batch * (double) m.denoiser.forwardFlops((int) tokens.size(1)).orElse(0);
            double dec = batch * (double) m.autoencoder.decoderFlops(m.latentSize(), m.latentSize()).orElse(0);
            f.put("latent", BenchCommand.flops(3 * dit, latentMs, peak));
            f.put("pixel", BenchCommand.flops(3 * dit + 3 * dec, pixelMs, peak));
            f.put("decode", BenchCommand.flops(dec, decodeMs, peak));
            f.put("decode_backward", BenchCommand.flops(2 * dec, decodeBackMs, peak));
            o.put("flops", f);
            if (concurrent > 1) o.put("micro_batches", microBatches(m, peak, dit));

            // cost options: time per step, and how closely the step's gradient follows the full pixel term's
            if (!noOptions) {
                Map<String, Object> options = new LinkedHashMap<>();
                options.put("pixel_fraction_0.5", option(m, opt, ctx, sft(8, 0.5, 0, 0)));
                options.put("pixel_crop_4_margin_1", option(m, opt, ctx, sft(8, 1, 4, 0)));
                options.put("decoder_chunk_2", option(m, opt, ctx, sft(8, 1, 0, 2)));
                o.put("options", options);
            }
            o.put("peak_rss_mib", Math.round(BenchCommand.peakRssMiB()));
            if (json) System.out.println(Json.write(o));
            else o.forEach((k, v) -> System.out.printf("%-28s %s%n", k, v));
            return 0;
        }
    }

    /**
     * One latent + pixel step (lambda 8) on the benchmark's batch: the denoiser's and decoder's
     * weights, the batch, the timesteps and noise it draws, the schedule, and as metadata the
     * latent and pixel terms, the loss and the gradient norm it gives, and the gradients.
     */
    private void saveStep(TextToImageModel m, StepContext ctx, java.nio.file.Path file) throws java.io.IOException {
        ensureBatch(m);
        double lambda = 8;
        Map<String, Tensor> out = new LinkedHashMap<>();
        m.denoiser.module().parameters().forEach((k, v) -> out.put("denoiser." + k, v));
        m.autoencoder.decoder().parameters().forEach((k, v) -> out.put("decoder." + k, v));
        out.put("z", z);
        out.put("tokens", tokens);
        out.put("mask", mask.to(torch.ScalarType.Float));
        ctx.gen().reseed(7);
        out.put("t", ctx.gen().randint(ctx.schedule().numTrainTimesteps(), batch).to(torch.ScalarType.Float)); // the draws Sft makes, in its order
        out.put("eps", ctx.gen().randnLike(z));
        float[] alphaBar = new float[ctx.schedule().numTrainTimesteps()];
        for (int i = 0; i < alphaBar.length; i++) alphaBar[i] = (float) ctx.schedule().alphaBar(i);
        out.put("alpha_bar", Tensors.fromFloats(alphaBar, alphaBar.length));
        ctx.gen().reseed(7);
        Loss res = sft(lambda, 1, 0, 0).loss(ctx, Batch.of(z, tokens, mask));
        res.loss().backward();
        double sq = 0;
        for (Map.Entry<String, Tensor> e : m.denoiser.module().parameters().entrySet()) {
            Tensor g = e.getValue().grad();
            if (!g.defined()) continue;
            sq += Tensors.item(g.square().sum());
            out.put("grad.denoiser." + e.getKey(), g);
        }
        Map<String, String> meta = new LinkedHashMap<>();
        meta.put("lambda", String.valueOf(lambda));
        meta.put("config", m.denoiser.configJson().toString());
        res.terms().forEach((k, v) -> meta.put(k, String.valueOf(v)));
        meta.put("grad_norm", String.valueOf(Math.sqrt(sq)));
        org.pixelpost.io.tensorfile.SafeTensors.write(file, out, meta);
        System.out.println("wrote " + file + ": " + meta);
    }

    private static Sft sft(double lambda, double fraction, int crop, int chunk) {
        return new Sft(1, new PixelTerm(lambda, PixelDecode.T, fraction, crop, 1, chunk));
    }

    private Tensor z, tokens, mask;

    /**
     * The latent and pixel steps through the trainer, the batch split into {@code concurrent}
     * micro-batches: one after another, then side by side on their own threads. The trainer's step
     * also zeroes the gradients twice and measures their norm, which the rows above do not.
     */
    private Map<String, Object> microBatches(TextToImageModel m, double peak, double ditFlops) {
        ensureBatch(m);
        int per = batch / concurrent;
        org.pixelpost.data.Batches data = new org.pixelpost.data.Batches() {
            @Override
            public Batch get(long step, int slot) {
                return Batch.of(z.narrow(0, (long) slot * per, per), tokens.narrow(0, (long) slot * per, per), mask.narrow(0, (long) slot * per, per));
            }

            @Override public long size() { return batch; }
        };
        Trainer.Options d = Trainer.Options.defaults();
        // lr 0, as in the rows above: the full update's cost, the weights (which later rows use) unchanged
        Trainer.Options o = new Trainer.Options(iters + 10, concurrent, 0, d.adamBeta1(), d.adamBeta2(), d.adamEps(), d.weightDecay(), 0, false, 0, 0,
            bf16, 0, 0);
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("micro_batches", concurrent);
        r.put("micro_batch", per);
        for (var row : List.of(Map.entry("latent", 0.0), Map.entry("pixel", 8.0)))
            for (int lanes : new int[] {1, concurrent}) {
                try (Trainer t = new Trainer(m, data, sft(row.getValue(), 1, 0, 0), o)) {
                    t.concurrentMicroBatches(lanes);
                    double ms = BenchCommand.medianMs(2, iters, t::trainStep);
                    r.put(row.getKey() + (lanes == 1 ? "_ms_in_turn" : "_ms_at_once"), round(ms));
                    if (row.getValue() == 0 && lanes > 1) r.put("latent_at_once_flops", BenchCommand.flops(3 * ditFlops, ms, peak));
                }
            }
        return r;
    }

    /** Median ms of a full training step (forward, backward, AdamW) with the given options. */
    private double stepMs(TextToImageModel m, AdamW opt, StepContext ctx, Sft objective) {
        ensureBatch(m);
        return BenchCommand.medianMs(2, iters, () -> {
            Loss res = objective.loss(ctx, Batch.of(z, tokens, mask));
            res.loss().backward();
            opt.step(0); // lr 0: the full update's cost, the weights unchanged
            opt.zeroGrad();
        });
    }

    private void ensureBatch(TextToImageModel m) {
        if (z != null) return;
        Batch b = syntheticBatch(m, batch);
        z = b.z();
        tokens = b.cond().tokens();
        mask = b.cond().mask();
        z.retainReference();
        tokens.retainReference();
        mask.retainReference();
    }

    /**
     * The training benchmarks' fixed batch: {@code n} latents drawn from seed 1 at the model's
     * latent size, captioned "emoji number i".
     */
    static Batch syntheticBatch(TextToImageModel m, int n) {
        Tensor z;
        try (Generator g = Generator.seeded(1)) {
            z = g.randn(n, m.autoencoder.latentChannels(), m.latentSize(), m.latentSize());
        }
        List<String> caps = new ArrayList<>();
        for (int i = 0; i < n; i++) caps.add("emoji number " + i);
        return Batch.of(z, m.textEncoder.encode(caps));
    }

    /** ms per step, and the cosine between this option's pixel-term gradient and the full one over 5 draws. */
    private Map<String, Object> option(TextToImageModel m, AdamW opt, StepContext ctx, Sft o) {
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("ms", round(stepMs(m, opt, ctx, o)));
        double cos = 0, rel = 0;
        int draws = 5;
        // pixel term alone (latent weight 0), so the comparison is of the pixel term's own signal
        Sft fullPix = new Sft(0, PixelTerm.of(1));
        PixelTerm p = o.pixel();
        Sft optPix = new Sft(0, new PixelTerm(1, PixelDecode.T, p.fraction(), p.crop(), p.cropMargin(), p.decoderChunk()));
        Batch batch = Batch.of(z, tokens, mask);
        for (int d = 0; d < draws; d++) {
            try (Scope sc = Scope.open()) {
                ctx.gen().reseed(100 + d);
                Loss a = fullPix.loss(ctx, batch);
                a.loss().backward();
                Tensor ga = flatGrad(m);
                opt.zeroGrad();
                ctx.gen().reseed(100 + d);
                Loss b = optPix.loss(ctx, batch);
                b.loss().backward();
                Tensor gb = flatGrad(m);
                opt.zeroGrad();
                cos += Tensors.item(ga.dot(gb).div(ga.norm().mul(gb.norm())));
                rel += Math.abs(b.terms().get("pixel") - a.terms().get("pixel")) / a.terms().get("pixel");
            }
        }
        r.put("gradient_cosine", round(cos / draws));
        r.put("pixel_term_rel_diff", round(rel / draws));
        return r;
    }

    private static Tensor flatGrad(TextToImageModel m) {
        List<Tensor> gs = new ArrayList<>();
        for (Tensor p : m.denoiser.module().parameters().values()) gs.add(p.grad().defined() ? p.grad().flatten() : torch.zeros(p.numel()));
        return torch.cat(new org.bytedeco.pytorch.TensorVector(gs.toArray(new Tensor[0])));
    }

    private static double round(double v) {
        return Math.round(v * 1000) / 1000.0;
    }
}
