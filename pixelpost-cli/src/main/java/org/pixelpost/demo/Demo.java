package org.pixelpost.demo;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.data.EmojiDataset;
import org.pixelpost.data.ImageCaptionSet;
import org.pixelpost.schedule.NoiseSchedule;
import org.pixelpost.pipeline.Sampler;
import org.pixelpost.metrics.Metrics;
import org.pixelpost.io.AtomicFiles;
import org.pixelpost.io.Images;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.model.autoencoder.Autoencoder;
import org.pixelpost.model.autoencoder.Autoencoders;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;
import org.pixelpost.train.Checkpointer;
import org.pixelpost.train.TrainConfig;
import org.pixelpost.train.TrainRun;

/**
 * The paper's experiments end to end on emoji, in one or two latent spaces ({@link Regime}): per
 * regime a base text-to-image model trained here, SFT and preference post-training with and
 * without the pixel term (decoding with that regime's own decoder), automatic metrics and human
 * studies; one HTML report sets the regimes side by side. Layout: {@code data/} and
 * {@code autoencoder/} shared, {@code lossy/} and {@code taef2/} per regime, {@code report.html}.
 * Every stage leaves its result in the output folder and is skipped when that result is there, so
 * a second run resumes.
 */
public final class Demo {
    /** What the demo tells its caller. */
    public interface Listener extends TrainRun.Listener {
        void stage(String name);
    }

    /** One post-trained model: its name, group (for seed statistics) and training settings. */
    record Arm(String name, String group, TrainConfig.Kind kind, double latentWeight, double pixelWeight, String pixelDecode, long seed) {}

    /**
     * A latent space the experiments run in: {@code lossy}, a 4-channel f8 AutoencoderKL trained
     * here (48x compression, as SD's VAE: the regime the paper's hypothesis is about), or
     * {@code taef2}, TAEF2's 32-channel latent (6x, whose reconstructions keep the emoji's detail).
     */
    public enum Regime {
        LOSSY("lossy", "4-channel f8 AutoencoderKL trained here (48x compression, as SD's VAE)"),
        TAEF2("taef2", "TAEF2, pretrained (32 channels at f8: 6x compression)");

        public final String id, description;

        Regime(String id, String description) {
            this.id = id;
            this.description = description;
        }

        /** {@code lossy}, {@code taef2} or {@code both}. */
        public static List<Regime> parse(String s) {
            return switch (s.toLowerCase(java.util.Locale.ROOT)) {
                case "lossy" -> List.of(LOSSY);
                case "taef2" -> List.of(TAEF2);
                case "both" -> List.of(LOSSY, TAEF2);
                default -> throw new org.pixelpost.io.check.InvalidValueException("--regime", "'" + s + "' is not lossy, taef2 or both");
            };
        }
    }

    static final ObjectMapper JSON = new ObjectMapper();
    private final Plan plan;
    private final Path out;
    private final Path tarball;
    private final List<Regime> regimes;
    private final Listener listener;
    private final Map<String, Double> stageSeconds = new LinkedHashMap<>();

    public Demo(Plan plan, Path out, Path tarball, List<Regime> regimes, Listener listener) {
        if (regimes.isEmpty()) throw new IllegalArgumentException("no regime");
        this.plan = plan;
        this.out = out;
        this.tarball = tarball;
        this.regimes = List.copyOf(regimes);
        this.listener = listener;
    }

    public Path run() throws IOException {
        long t0 = System.nanoTime();
        Engine.start();
        Files.createDirectories(out);
        if (Files.isDirectory(out.resolve("base")) && Files.isDirectory(out.resolve("runs")) && !Files.isDirectory(dir(Regime.TAEF2)))
            throw new IOException(out + " holds a demo in the earlier layout (base/, runs/, ... at its top, TAEF2 only); move those folders into "
                + dir(Regime.TAEF2) + " (mkdir " + dir(Regime.TAEF2) + " && mv " + out + "/{base,base-init,guidance,runs,pairs,eval,studies} "
                + dir(Regime.TAEF2) + "/) to keep them, or choose another --out");
        Path data = stage("data", this::data);
        // a regime finished by an earlier call stays in the report: its stages are all cached
        List<Regime> reported = new ArrayList<>();
        for (Regime r : Regime.values())
            if (regimes.contains(r) || Files.isRegularFile(dir(r).resolve("studies/studies.json"))) reported.add(r);
        List<Report.RegimeResult> results = new ArrayList<>();
        for (Regime r : reported) {
            String spec = r == Regime.LOSSY ? stage("lossy: autoencoder", () -> autoencoder(data)).toAbsolutePath().toString() : "taef2";
            results.add(new RegimeRun(r, spec).run(data));
        }
        double total = (System.nanoTime() - t0) / 1e9;
        return stage("report", () -> Report.write(out, plan, results, stageSeconds, total));
    }

    /** The regime's folder in the output folder. */
    Path dir(Regime r) {
        return out.resolve(r.id);
    }

    /**
     * The lossy regime's first stage: an AutoencoderKL (4 channels, f8) trained on the train split,
     * validated on the validation split; trained once and kept in {@code autoencoder/model}.
     */
    private Path autoencoder(Path data) throws IOException {
        Path run = out.resolve("autoencoder"), model = run.resolve("model");
        if (Files.isRegularFile(run.resolve("summary.json"))) return model; // written last: the stage is complete
        if (Files.isDirectory(model)) { // stopped between the model and its summary: measure the model again
            writeSummary(run, model, null);
            return model;
        }
        Checkpointer ck = new Checkpointer(run.resolve("checkpoints"), 0, 1);
        org.pixelpost.train.AutoencoderTraining.Config c = new org.pixelpost.train.AutoencoderTraining.Config(data.resolve("train"),
            data.resolve("val"), run, Plan.AUTOENCODER, 64, plan.aeSteps(), plan.aeBatch(), plan.aeLr(), Math.min(100, plan.aeSteps() / 10),
            "l1", 1.0, 1e-6, 1.0, 0, Math.max(1, plan.aeSteps() / 4), 1, Math.max(1, plan.aeSteps() / 100), ck.list().isEmpty() ? null : "latest");
        org.pixelpost.train.AutoencoderTraining.Summary s = new org.pixelpost.train.AutoencoderTraining(c,
            new org.pixelpost.train.AutoencoderTraining.Listener() {
                @Override public void step(long step, long total, Map<String, Double> terms) { listener.step(step, total, terms); }
                @Override public void message(String text) { listener.message(text); }
            }).run();
        writeSummary(run, model, s);
        return model;
    }

    /** {@code autoencoder/summary.json}: the autoencoder's figures for the report (the training's, where this run trained it). */
    private void writeSummary(Path run, Path model, org.pixelpost.train.AutoencoderTraining.Summary s) throws IOException {
        ObjectNode j = JSON.createObjectNode();
        try (Autoencoder ae = Autoencoders.load(model.toString())) {
            int f = ae.downsampling();
            j.put("parameters", ae.parameterCount()).put("latent_channels", ae.latentChannels()).put("downsampling", f)
                .put("compression", 3.0 * f * f / ae.latentChannels());
        }
        j.put("scaling_factor", JSON.readTree(model.resolve("config.json").toFile()).path("scaling_factor").asDouble()); // as the folder records it
        if (s != null) j.put("steps", s.steps()).put("seconds", s.seconds()).put("latent_std", s.latentStd()).put("val_psnr", s.valPsnr());
        else j.put("val_psnr", org.pixelpost.train.AutoencoderTraining.psnr(model, out.resolve("data/val"), 64));
        AtomicFiles.writeString(run.resolve("summary.json"), j.toPrettyString());
    }

    interface Stage<T> {
        T run() throws IOException;
    }

    private <T> T stage(String name, Stage<T> s) throws IOException {
        listener.stage(name);
        long t = System.nanoTime();
        T r = s.run();
        stageSeconds.put(name, (System.nanoTime() - t) / 1e9);
        return r;
    }

    private Path data() throws IOException {
        Path dir = out.resolve("data");
        if (Files.isRegularFile(dir.resolve("manifest.json"))) return dir;
        Path tgz = tarball != null ? tarball : EmojiDataset.npmPack(out.resolve("download"));
        EmojiDataset.Summary s = EmojiDataset.build(tgz, dir, plan.trainLimit());
        listener.message(String.format("emoji: %d train, %d validation, %d curated SFT, %d evaluation prompts", s.train(), s.val(), s.sft(), s.eval()));
        return dir;
    }

    static double latentStd(Autoencoder ae, ImageCaptionSet set, int n) throws IOException {
        List<Tensor> xs = new ArrayList<>();
        for (int i = 0; i < Math.min(n, set.items().size()); i++) xs.add(Images.load(set.items().get(i).file(), 64));
        try (Scope s = Scope.open(); var g = Tensors.noGrad()) {
            return Tensors.item(ae.encode(torch.stack(new TensorVector(xs.toArray(new Tensor[0])))).std());
        }
    }

    /** The group of the headline SFT arm (latent + pixel at the plan's lambda). */
    String headlineSftGroup() {
        return "sft-pixel-l" + fmt(plan.headlineLambda());
    }

    List<Arm> sftArms() {
        List<Arm> arms = new ArrayList<>();
        double h = plan.headlineLambda();
        for (int s = 0; s < plan.headlineSeeds(); s++) {
            arms.add(new Arm("sft-latent-s" + s, "sft-latent", TrainConfig.Kind.SFT, 1, 0, "t", s));
            arms.add(new Arm("sft-pixel-l" + fmt(h) + "-s" + s, "sft-pixel-l" + fmt(h), TrainConfig.Kind.SFT, 1, h, "t", s));
        }
        for (double l : plan.lambdas()) if (l != h) arms.add(new Arm("sft-pixel-l" + fmt(l) + "-s0", "sft-pixel-l" + fmt(l), TrainConfig.Kind.SFT, 1, l, "t", 0));
        arms.add(new Arm("sft-pixel-only-s0", "sft-pixel-only", TrainConfig.Kind.SFT, 0, 1, "t", 0));
        arms.add(new Arm("sft-x0-l" + fmt(h) + "-s0", "sft-x0-l" + fmt(h), TrainConfig.Kind.SFT, 1, h, "x0", 0));
        return arms;
    }

    List<Arm> prefArms() {
        List<Arm> arms = new ArrayList<>();
        for (int s = 0; s < plan.headlineSeeds(); s++) {
            arms.add(new Arm("dpo-s" + s, "dpo", TrainConfig.Kind.DPO, 1, 0, "t", s));
            arms.add(new Arm("dpo-pixel-s" + s, "dpo-pixel", TrainConfig.Kind.DPO, 1, 8, "t", s));
        }
        arms.add(new Arm("simpo-s0", "simpo", TrainConfig.Kind.SIMPO, 1, 0, "t", 0));
        arms.add(new Arm("simpo-pixel-s0", "simpo-pixel", TrainConfig.Kind.SIMPO, 1, 8, "t", 0));
        return arms;
    }

    static String fmt(double v) {
        return v == Math.rint(v) ? Long.toString((long) v) : Double.toString(v);
    }

    private ObjectNode config(Path init, String data, Path run, int steps, int batch, double lr, long seed) {
        ObjectNode c = TrainConfig.JSON.createObjectNode();
        c.put("init", init.toString()).put("data", data).put("out", run.toString()).put("steps", steps).put("batch_size", batch)
            .put("lr", lr).put("seed", seed).put("log_every", Math.max(1, steps / 50));
        return c;
    }

    private void train(ObjectNode c, Path run) throws IOException {
        if (Files.isDirectory(run.resolve("checkpoints"))) c.put("resume", "latest");
        try {
            new TrainRun(TrainConfig.from(c), listener).run();
        } catch (IOException e) {
            // an earlier attempt stopped before its first checkpoint: start it again
            if (e.getMessage() != null && e.getMessage().contains("no checkpoint to resume from")) {
                c.remove("resume");
                new TrainRun(TrainConfig.from(c), listener).run();
            } else {
                throw e;
            }
        }
    }

    /**
     * One of the paper's headline comparisons: a baseline and an arm with the pixel term (arm
     * groups), and its human study; {@code pixelTermOnly} where the two differ only by the pixel
     * term (not so for SimPO + pixel against DPO, which changes the objective too).
     */
    record Headline(String study, String latent, String pixel, boolean pixelTermOnly) {}

    /**
     * SFT (with the plan's headline lambda), DPO and SimPO, each without and with the pixel term,
     * and the paper's own headline (Table 3): SimPO + pixel, its method, against DPO, its baseline.
     */
    static List<Headline> headlines(String sftPixelGroup) {
        return List.of(new Headline("sft-latent-vs-pixel", "sft-latent", sftPixelGroup, true), new Headline("dpo-vs-dpo-pixel", "dpo", "dpo-pixel", true),
            new Headline("simpo-vs-simpo-pixel", "simpo", "simpo-pixel", true), new Headline("dpo-vs-simpo-pixel", "dpo", "simpo-pixel", false));
    }

    /** One regime's stages, in its own folder: base model, guidance, SFT and preference runs, evaluation, studies. */
    final class RegimeRun {
        private final Regime regime;
        /** The regime's folder: every stage below writes under it. */
        private final Path out;
        /** {@code taef2} or the trained autoencoder's folder. */
        private final String autoencoder;
        /** The guidance the sweep chose for the base model; every later stage samples with it. */
        private double guidance;

        RegimeRun(Regime regime, String autoencoder) {
            this.regime = regime;
            this.out = dir(regime);
            this.autoencoder = autoencoder;
        }

        Report.RegimeResult run(Path data) throws IOException {
            String r = regime.id + ": ";
            Files.createDirectories(out);
            Path base = stage(r + "base model", () -> base(data));
            JsonNode sweep = stage(r + "guidance sweep", () -> guidanceSweep(base, data));
            guidance = sweep.get("chosen").asDouble();
            List<Arm> sftArms = sftArms(), prefArms = prefArms();
            stage(r + "SFT runs", () -> {
                for (Arm a : sftArms) postTrain(a, base, data.resolve("sft").toString());
                return null;
            });
            Path pairs = stage(r + "preference pairs", () -> pairs(base, data));
            stage(r + "preference runs", () -> {
                for (Arm a : prefArms) postTrain(a, base, pairs.toString());
                return null;
            });
            Map<String, Path> models = new LinkedHashMap<>();
            models.put("base", base);
            for (Arm a : sftArms) models.put(a.name, out.resolve("runs").resolve(a.name).resolve("model"));
            for (Arm a : prefArms) models.put(a.name, out.resolve("runs").resolve(a.name).resolve("model"));
            Map<String, JsonNode> metrics = stage(r + "evaluation", () -> evaluate(models, data));
            JsonNode studies = stage(r + "human studies", () -> studies(headlineSftGroup(), data));
            JsonNode ae;
            Path summary = Demo.this.out.resolve("autoencoder/summary.json");
            if (regime == Regime.LOSSY && Files.isRegularFile(summary)) ae = JSON.readTree(summary.toFile());
            else try (Autoencoder a = Autoencoders.load(autoencoder)) {
                int f = a.downsampling();
                ae = JSON.createObjectNode().put("latent_channels", a.latentChannels()).put("downsampling", f).put("compression", 3.0 * f * f / a.latentChannels());
            }
            return new Report.RegimeResult(regime, headlineSftGroup(), sftArms, prefArms, metrics, sweep, studies, ae);
        }

        /** A fresh DiT over the regime's autoencoder (latents scaled to unit variance), trained with the latent loss on the train split. */
        private Path base(Path data) throws IOException {
            Path run = out.resolve("base");
            Path model = run.resolve("model");
            if (Files.isDirectory(model)) return model;
            Path init = out.resolve("base-init");
            if (!Files.isDirectory(init)) {
                double std;
                try (Autoencoder ae = Autoencoders.load(autoencoder)) {
                    std = latentStd(ae, ImageCaptionSet.load(data.resolve("train")), 256);
                }
                listener.message(String.format("%s latent std on emoji: %.3f; diffusion runs on latents / %.3f", regime.id, std, std));
                Engine.seed(0);
                try (TextToImageModel m = TextToImageModel.create(plan.baseSize(), autoencoder, 64, 1 / std)) {
                    m.save(init);
                }
            }
            ObjectNode c = config(init, data.resolve("train").toString(), run, plan.baseSteps(), plan.baseBatch(), plan.baseLr(), 0);
            c.put("pixel_weight", 0.0).put("lr_schedule", "cosine").put("warmup_steps", Math.min(200, plan.baseSteps() / 10))
                .put("ema_decay", plan.baseSteps() >= 1000 ? 0.999 : 0.0).put("checkpoint_every", Math.max(1, plan.baseSteps() / 10))
                .put("val_data", data.resolve("val").toString()).put("val_every", Math.max(1, plan.baseSteps() / 5))
                .put("log_every", Math.max(1, plan.baseSteps() / 100))
                .put("sample_every", Math.max(1, plan.baseSteps() / 5)).putArray("sample_prompts").add("grinning face").add("red heart")
                .add("dog face").add("slice of pizza").add("rocket").add("sunflower").add("fire").add("thumbs up sign");
            train(c, run);
            return model;
        }

        private void postTrain(Arm a, Path base, String data) throws IOException {
            Path run = out.resolve("runs").resolve(a.name);
            if (Files.isDirectory(run.resolve("model"))) return;
            boolean pref = a.kind != TrainConfig.Kind.SFT;
            ObjectNode c = config(base, data, run, pref ? plan.prefSteps() : plan.sftSteps(), pref ? plan.prefBatch() : plan.sftBatch(),
                pref ? plan.prefLr() : plan.sftLr(), a.seed);
            c.put("objective", a.kind.name().toLowerCase(java.util.Locale.ROOT)).put("latent_weight", a.latentWeight).put("pixel_weight", a.pixelWeight)
                .put("pixel_decode", a.pixelDecode).put("beta", a.kind == TrainConfig.Kind.SIMPO ? plan.simpoBeta() : plan.beta())
                .put("checkpoint_every", 0);
            listener.message("run " + a.name);
            train(c, run);
        }

        /**
         * Preference pairs from the base model: several samples per training prompt; the automatic judge
         * (distance to the real emoji in pixels and in image gradients) picks the closest as winner and
         * the farthest as loser.
         */
        private Path pairs(Path base, Path data) throws IOException {
            Path dir = out.resolve("pairs");
            Path file = dir.resolve("pairs.jsonl");
            if (Files.isRegularFile(file)) return file;
            Files.createDirectories(dir.resolve("images"));
            ImageCaptionSet train = ImageCaptionSet.load(data.resolve("sft"));
            List<ImageCaptionSet.Item> items = EmojiDataset.spread(train.items(), plan.pairPrompts());
            StringBuilder jsonl = new StringBuilder();
            try (TextToImageModel m = TextToImageModel.load(base)) {
                Sampler sampler = m.sampler();
                int k = plan.samplesPerPrompt();
                for (int i = 0; i < items.size(); i++) {
                    ImageCaptionSet.Item it = items.get(i);
                    List<String> prompts = java.util.Collections.nCopies(k, it.caption());
                    long[] seeds = new long[k];
                    for (int j = 0; j < k; j++) seeds[j] = 1000L * i + j;
                    try (Scope s = Scope.open()) {
                        Tensor imgs = sampler.sample(prompts, seeds, new Sampler.Settings(plan.pairSteps(), guidance, 0), null);
                        Tensor real = Images.load(it.file(), 64).unsqueeze(0).expand(k, 3, 64, 64);
                        double[] d = Metrics.judgeDistance(imgs, real);
                        int best = 0, worst = 0;
                        for (int j = 1; j < k; j++) {
                            if (d[j] < d[best]) best = j;
                            if (d[j] > d[worst]) worst = j;
                        }
                        for (int j = 0; j < k; j++) Images.writePng(dir.resolve("images").resolve(String.format("%04d-%d.png", i, j)), imgs.select(0, j));
                        ObjectNode p = JSON.createObjectNode();
                        p.put("prompt", it.caption()).put("winner", String.format("images/%04d-%d.png", i, best))
                            .put("loser", String.format("images/%04d-%d.png", i, worst)).put("winner_distance", d[best]).put("loser_distance", d[worst]);
                        jsonl.append(p).append('\n');
                    }
                    listener.step(i + 1, items.size(), Map.of());
                }
            }
            AtomicFiles.writeString(file, jsonl.toString());
            return file;
        }

        /**
         * The base model sampled on validation prompts that are not evaluation prompts, at each guidance
         * of the plan's sweep; the guidance whose samples are closest to the real images (the judge's
         * distance) is chosen. Cached in {@code guidance/sweep.json}.
         */
        private JsonNode guidanceSweep(Path base, Path data) throws IOException {
            Path file = out.resolve("guidance/sweep.json");
            if (Files.isRegularFile(file)) return JSON.readTree(file.toFile());
            java.util.Set<String> evalFiles = new java.util.HashSet<>();
            for (ImageCaptionSet.Item it : ImageCaptionSet.load(data.resolve("eval")).items()) evalFiles.add(it.file().getFileName().toString());
            List<ImageCaptionSet.Item> items = ImageCaptionSet.load(data.resolve("val")).items().stream()
                .filter(it -> !evalFiles.contains(it.file().getFileName().toString())).limit(plan.sweepPrompts()).toList();
            ObjectNode j = JSON.createObjectNode();
            ArrayNode rows = j.putArray("rows");
            double best = Double.POSITIVE_INFINITY, chosen = plan.guidance();
            try (TextToImageModel m = TextToImageModel.load(base); Scope s = Scope.open()) {
                List<Tensor> realList = new ArrayList<>();
                for (ImageCaptionSet.Item it : items) realList.add(Images.load(it.file(), 64));
                Tensor real = torch.stack(new TensorVector(realList.toArray(new Tensor[0])));
                List<String> prompts = items.stream().map(ImageCaptionSet.Item::caption).toList();
                long[] seeds = java.util.stream.LongStream.range(0, prompts.size()).toArray();
                for (double g : plan.guidanceSweep()) {
                    try (Scope gs = Scope.open()) {
                        Tensor imgs = m.sampler().sample(prompts, seeds, new Sampler.Settings(plan.evalSteps(), g, 0), null);
                        saveGrid(out.resolve("guidance").resolve("g" + fmt(g)), imgs, Math.min(8, prompts.size()));
                        ObjectNode r = imageMetrics(imgs, real, real, null);
                        r.put("guidance", g);
                        r.remove("judge_distance");
                        rows.add(r);
                        double d = r.get("judge_mean").asDouble();
                        if (d < best) {
                            best = d;
                            chosen = g;
                        }
                    }
                }
            }
            j.put("chosen", chosen).put("prompts", items.size()).put("criterion", "judge distance to the real images (lower is better)");
            listener.message(String.format("guidance sweep on %d validation prompts: %.1f is closest to the real images", items.size(), chosen));
            Files.createDirectories(file.getParent());
            AtomicFiles.writeString(file, j.toPrettyString());
            return j;
        }

        /** Samples and metrics per model (cached in {@code eval/NAME/metrics.json}), plus the real images' row and the regime's autoencoder reconstructions (its ceiling). */
        private Map<String, JsonNode> evaluate(Map<String, Path> models, Path data) throws IOException {
            try (Scope top = Scope.open()) { // the references, reconstructions and held-out images are freed with it
                ImageCaptionSet eval = ImageCaptionSet.load(data.resolve("eval"));
                List<ImageCaptionSet.Item> items = eval.items().subList(0, Math.min(plan.evalPrompts(), eval.items().size()));
                List<Tensor> realList = new ArrayList<>();
                for (ImageCaptionSet.Item it : items) realList.add(Images.load(it.file(), 64));
                Tensor real = torch.stack(new TensorVector(realList.toArray(new Tensor[0])));
                Tensor realRep = real.repeat(plan.evalSeeds(), 1, 1, 1);
                ImageCaptionSet val = ImageCaptionSet.load(data.resolve("val"));
                List<Tensor> heldOut = new ArrayList<>();
                List<String> heldCaptions = new ArrayList<>();
                for (int i = 0; i < Math.min(plan.denoiseImages(), val.items().size()); i++) {
                    heldOut.add(Images.load(val.items().get(i).file(), 64));
                    heldCaptions.add(val.items().get(i).caption());
                }
                Tensor held = torch.stack(new TensorVector(heldOut.toArray(new Tensor[0])));

                Map<String, JsonNode> all = new LinkedHashMap<>();
                Tensor recon;
                try (Autoencoder ae = Autoencoders.load(autoencoder); var g = Tensors.noGrad()) {
                    recon = Tensors.clamp(ae.decode(ae.encode(realRep)), 0, 1);
                }
                all.put("real", imageMetrics(realRep, realRep, realRep, null));
                all.put("reconstruction", imageMetrics(recon, realRep, realRep, null));
                saveGrid(out.resolve("eval/real"), real, items.size());
                saveGrid(out.resolve("eval/reconstruction"), recon.narrow(0, 0, items.size()), items.size());
                int n = 0;
                for (Map.Entry<String, Path> e : models.entrySet()) {
                    Path dir = out.resolve("eval").resolve(e.getKey());
                    Path mf = dir.resolve("metrics.json");
                    listener.step(++n, models.size(), Map.of());
                    if (Files.isRegularFile(mf)) {
                        all.put(e.getKey(), JSON.readTree(mf.toFile()));
                        continue;
                    }
                    try (TextToImageModel m = TextToImageModel.load(e.getValue()); Scope s = Scope.open()) {
                        Sampler sampler = m.sampler();
                        List<String> prompts = new ArrayList<>();
                        List<Long> seeds = new ArrayList<>();
                        for (int sd = 0; sd < plan.evalSeeds(); sd++)
                            for (ImageCaptionSet.Item it : items) {
                                prompts.add(it.caption());
                                seeds.add((long) sd);
                            }
                        List<Tensor> chunks = new ArrayList<>();
                        for (int i = 0; i < prompts.size(); i += 32) {
                            int j = Math.min(prompts.size(), i + 32);
                            chunks.add(sampler.sample(prompts.subList(i, j), seeds.subList(i, j).stream().mapToLong(Long::longValue).toArray(),
                                new Sampler.Settings(plan.evalSteps(), guidance, 0), null));
                        }
                        Tensor samples = torch.cat(new TensorVector(chunks.toArray(new Tensor[0])), 0);
                        saveGrid(dir, samples, items.size());
                        List<org.pixelpost.pipeline.SampleFolder.Image> listed = new ArrayList<>();
                        for (int i = 0; i < samples.size(0); i++) {
                            String f = String.format("%03d-%d.png", i % items.size(), i / items.size());
                            Images.writePng(dir.resolve(f), samples.select(0, i));
                            listed.add(new org.pixelpost.pipeline.SampleFolder.Image(f, prompts.get(i), seeds.get(i)));
                        }
                        // the folder is a sample folder like pixelpost sample's, so that studies can be made of it
                        new org.pixelpost.pipeline.SampleFolder(e.getKey(), items.stream().map(ImageCaptionSet.Item::caption).toList(), plan.evalSteps(),
                            guidance, 0, 0, plan.evalSeeds(), null, listed, 0).write(dir);
                        ObjectNode j = imageMetrics(samples, realRep, realRep, items.size());
                        ObjectNode[] err = denoiseError(m, held, heldCaptions);
                        j.set("denoise_error", err[0]);
                        j.set("denoise_error_hf", err[1]);
                        AtomicFiles.writeString(mf, j.toPrettyString());
                        all.put(e.getKey(), j);
                    }
                }
                return all;
            }
        }

        /**
         * Creates, in {@code studies/eval.db}, the A/B studies of each headline pair (seed 0 of each
         * group; gold and repeated items for annotator quality) and an alignment study of the headline
         * arms with yes/no questions generated from each evaluation prompt; says how to serve them.
         * Cached in {@code studies/studies.json}.
         */
        private JsonNode studies(String headline, Path data) throws IOException {
            Path dir = out.resolve("studies"), file = dir.resolve("studies.json");
            if (Files.isRegularFile(file)) return JSON.readTree(file.toFile());
            Files.createDirectories(dir);
            ObjectNode j = JSON.createObjectNode();
            ArrayNode list = j.putArray("studies");
            Map<String, Path> aligned = new LinkedHashMap<>();
            try (org.pixelpost.eval.study.StudyStore store = new org.pixelpost.eval.study.StudyStore("jdbc:sqlite:" + dir.resolve("eval.db"))) {
                for (Headline hl : headlines(headline)) {
                    String a = hl.latent() + "-s0", b = hl.pixel() + "-s0";
                    Path da = out.resolve("eval").resolve(a), db = out.resolve("eval").resolve(b);
                    if (!Files.isRegularFile(da.resolve(org.pixelpost.pipeline.SampleFolder.FILE)) || !Files.isRegularFile(db.resolve(org.pixelpost.pipeline.SampleFolder.FILE))) continue;
                    Map<String, Path> models = new LinkedHashMap<>();
                    models.put(a, da);
                    models.put(b, db);
                    aligned.putAll(models);
                    int n = org.pixelpost.eval.study.Studies.create(store, hl.study(), org.pixelpost.eval.study.StudyStore.Kind.AB, models, null, null, 3, 7,
                        0.1, 0.05, dir.resolve("gold"));
                    list.addObject().put("name", hl.study()).put("kind", "ab").put("items", n).put("model_a", a).put("model_b", b);
                }
                Path questions = dir.resolve("questions.jsonl");
                StringBuilder q = new StringBuilder();
                for (ImageCaptionSet.Item it : ImageCaptionSet.load(data.resolve("eval")).items()) {
                    ObjectNode line = JSON.createObjectNode().put("prompt", it.caption());
                    line.putArray("questions").add("Does the image show " + it.caption() + "?")
                        .add("Is it a single emoji-style icon on a plain background?").add("Is it free of visible noise, smears or broken shapes?");
                    q.append(line).append('\n');
                }
                AtomicFiles.writeString(questions, q.toString());
                if (!aligned.isEmpty()) {
                    int n = org.pixelpost.eval.study.Studies.create(store, "alignment", org.pixelpost.eval.study.StudyStore.Kind.ALIGNMENT, aligned, questions,
                        null, 3, 7);
                    list.addObject().put("name", "alignment").put("kind", "alignment").put("items", n);
                }
            } catch (java.sql.SQLException e) {
                throw new IOException("cannot create the studies in " + dir + ": " + e.getMessage(), e);
            }
            j.put("serve", "pixelpost eval serve --dir " + dir + " --port 8080");
            j.put("results", "pixelpost demo" + (plan.name().equals("quick") ? " --quick" : "") + " --regime " + regime.id + " --report --out " + Demo.this.out);
            AtomicFiles.writeString(file, j.toPrettyString());
            listener.message("human studies ready: " + j.get("serve").asText() + "; then invite annotators (pixelpost eval invite --dir " + dir
                + " NAME...) and, once they have voted, " + j.get("results").asText());
            return j;
        }
    }

    private static void saveGrid(Path dir, Tensor images, int cols) throws IOException {
        Files.createDirectories(dir);
        List<java.awt.image.BufferedImage> tiles = new ArrayList<>();
        for (int i = 0; i < images.size(0); i++) tiles.add(Images.toImage(images.select(0, i)));
        Images.writePng(dir.resolve("grid.png"), Images.grid(tiles, Math.min(8, cols), 2));
    }

    /** Sharpness ratios, SWD per level and the judge's per-prompt distances (averaged over seeds). */
    private ObjectNode imageMetrics(Tensor images, Tensor references, Tensor real, Integer prompts) {
        ObjectNode j = JSON.createObjectNode();
        double hfReal = Metrics.highFrequencyEnergy(real, 0.5), lapReal = Metrics.laplacianVariance(real);
        j.put("hf_energy_ratio", Metrics.highFrequencyEnergy(images, 0.5) / hfReal);
        j.put("laplacian_var_ratio", Metrics.laplacianVariance(images) / lapReal);
        ArrayNode swd = j.putArray("swd");
        for (double v : Metrics.slicedWasserstein(images, real, 3, 7)) swd.add(v);
        double[] d = Metrics.judgeDistance(images, references);
        int p = prompts == null ? d.length : prompts;
        putPerPrompt(j, "judge", d, p);
        // the second judge (colour and structure statistics), which played no part in picking the preference pairs
        putPerPrompt(j, "judge2", Metrics.statisticsDistance(images, references), p);
        return j;
    }

    /**
     * A judge's per-image distances averaged per prompt (images are prompt-major within each seed)
     * as {@code NAME_distance}, and their mean as {@code NAME_mean}.
     */
    private static void putPerPrompt(ObjectNode j, String name, double[] d, int prompts) {
        double[] perPrompt = new double[prompts];
        for (int i = 0; i < d.length; i++) perPrompt[i % prompts] += d[i] / (d.length / prompts);
        ArrayNode a = j.putArray(name + "_distance");
        for (double v : perPrompt) a.add(v);
        j.put(name + "_mean", java.util.Arrays.stream(perPrompt).average().orElse(0));
    }

    /**
     * Mean pixel MSE of {@code D(predicted z_0)} against the held-out images (with their captions),
     * at a few timesteps, and the part of it above half of Nyquist.
     */
    private static ObjectNode[] denoiseError(TextToImageModel m, Tensor images, List<String> captions) {
        ObjectNode j = JSON.createObjectNode(), hf = JSON.createObjectNode();
        NoiseSchedule s = m.noiseSchedule();
        try (Scope sc = Scope.open(); var g = Tensors.noGrad()) {
            Tensor z = m.encodeImages(images);
            Tensor eps;
            try (Generator gen = Generator.seeded(4242)) {
                eps = gen.randnLike(z);
            }
            org.pixelpost.model.Conditioning text = m.textEncoder.encode(captions);
            for (int t : new int[] {100, 300, 500, 700, 900}) {
                Tensor tt = torch.full(new long[] {z.size(0)}, new org.bytedeco.pytorch.Scalar(t)).to(torch.ScalarType.Long);
                Tensor zT = s.addNoise(z, eps, tt);
                Tensor x0 = s.sample(m.predictionType(), m.denoiser.forward(zT, tt, text), zT, tt);
                Tensor img = Tensors.clamp(m.decodeLatents(x0), 0, 1);
                j.put(Integer.toString(t), Tensors.item(img.sub(images).square().mean()));
                hf.put(Integer.toString(t), Metrics.highFrequencyError(img, images, 0.5));
            }
        }
        return new ObjectNode[] {j, hf};
    }


}
