package org.pixelpost.train;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.List;
import org.pixelpost.io.FlatOptions;
import org.pixelpost.io.FlatOptions.Opt;
import org.pixelpost.io.check.Checks;
import org.pixelpost.io.check.InvalidValueException;
import org.pixelpost.model.denoiser.Denoiser;
import org.pixelpost.objective.Dpo;
import org.pixelpost.objective.Objective;
import org.pixelpost.objective.Objectives;
import org.pixelpost.objective.PixelDecode;
import org.pixelpost.objective.PixelTerm;
import org.pixelpost.objective.Sft;
import org.pixelpost.objective.Simpo;

/**
 * Everything a training run needs, as option records by concern ({@link Method}, {@link Data},
 * {@link Optimizer}, {@link Adapters}, {@link Run}, {@link Validation}) bound flat: each option is
 * declared once, with its help and default, and is one JSON key in snake_case and one flag in
 * kebab-case whatever its group ({@code pixelWeight} = {@code "pixel_weight"} = {@code --pixel-weight}).
 * Defaults follow the paper where it gives one. The library's records ({@link PixelTerm},
 * {@link Trainer.Options}, the LoRA options) check their own values; this record checks only what
 * spans them.
 */
public record TrainConfig(Method method, Data data, Optimizer optimizer, Adapters adapters, Run run, Validation validation) {
    /** What is optimised: the objective (Eqs. 3-7) and its pixel term. */
    public record Method(
        @Opt(help = "sft, dpo or simpo", def = "sft") String objective,
        @Opt(help = "weight of the latent term (0: pixel only)", def = "1.0") double latentWeight,
        @Opt(help = "lambda (SFT) or mu (preference): weight of the pixel term; the paper uses 8 for DiT, 2 for U-Net; 0: latent only", def = "8.0") double pixelWeight,
        @Opt(help = "t: decode at the current timestep (Eq. 2); x0: decode the predicted clean latent (Eq. 8)", def = "t") String pixelDecode,
        @Opt(help = "pixel term on this random fraction of the batch (cost option; 1: all)", def = "1.0") double pixelFraction,
        @Opt(help = "pixel term on a random latent crop of this size (cost option; 0: the whole latent)", def = "0") int pixelCrop,
        @Opt(help = "latent pixels of context decoded around a crop and not compared", def = "1") int pixelCropMargin,
        @Opt(help = "run the decoder forward and backward on this many samples at a time, bounding its memory (0: whole batch)", def = "0") int decoderChunk,
        @Opt(help = "the decoder of the pixel term: vae (the model's own), taesd, or an autoencoder path over the same latents", def = "vae") String pixelDecoder,
        @Opt(help = "preference temperature beta on per-element mean errors (Diffusion-DPO's beta_dpo is twice this)", def = "2500") double beta,
        @Opt(help = "SimPO target margin gamma (0 as in the paper)", def = "0") double gamma,
        @Opt(help = "frozen reference model folder for DPO (default: the --init model)") String reference) {}

    /** What it is trained on, and how each batch is drawn. */
    public record Data(
        @Opt(help = "data folder: captions.jsonl (SFT) or pairs.jsonl (preference)") String data,
        @Opt(help = "held-out data folder for validation loss (optional)") String valData,
        @Opt(help = "samples (or pairs) per micro-batch", def = "8") int batchSize,
        @Opt(help = "random horizontal flips", def = "true") boolean flip,
        @Opt(help = "sample: each step trains on a fresh draw from the VAE's posterior, as diffusers' and kohya's scripts do; mean: on its mean (no effect for a deterministic autoencoder such as TAESD)", def = "sample") String latentSample,
        @Opt(help = "probability that a caption is replaced by the empty prompt, which trains the unconditional prediction guidance needs", def = "0.1") double captionDropout,
        @Opt(help = "skip or fail on unreadable images", def = "skip") String onBadImage,
        @Opt(help = "skip (with a count) or fail on preference pairs whose winner and loser are the same image", def = "skip") String onBadPair,
        @Opt(help = "a T5 text encoder (PixArt) encodes the captions in fp32 or bf16 (T5-XXL: 19.0 or 9.5 GB; fp16 is refused, T5 overflows in it); it is unloaded before training", def = "fp32") String textEncoderDtype) {}

    /** How the weights move: AdamW, the learning-rate schedule, clipping, EMA. */
    public record Optimizer(
        @Opt(help = "peak learning rate", def = "2e-5") double lr,
        @Opt(help = "Adam beta1", def = "0.9") double adamBeta1,
        @Opt(help = "Adam beta2", def = "0.999") double adamBeta2,
        @Opt(help = "Adam epsilon", def = "1e-8") double adamEps,
        @Opt(help = "decoupled weight decay (the paper: 5e-6)", def = "5e-6") double weightDecay,
        @Opt(help = "linear warm-up steps", def = "0") int warmupSteps,
        @Opt(help = "constant or cosine after warm-up", def = "constant") String lrSchedule,
        @Opt(help = "clip the global gradient norm to this (0: off)", def = "1.0") double maxGradNorm,
        @Opt(help = "EMA decay of the weights (0: no EMA)", def = "0.0") double emaDecay) {}

    /** LoRA instead of full fine-tuning. */
    public record Adapters(
        @Opt(help = "train LoRA adapters of this rank instead of the whole denoiser (0: full fine-tuning)", def = "0") int loraRank,
        @Opt(help = "LoRA alpha: the update is scaled by alpha / rank (0: alpha = rank)", def = "0") double loraAlpha,
        @Opt(help = "layers that get adapters: presets attention, ff, proj, conv, or regular expressions on layer paths", def = "attention") List<String> loraTargets,
        @Opt(help = "dropout on the adapters' input while training", def = "0") double loraDropout,
        @Opt(help = "layout of the run's lora.safetensors: kohya (loads in AUTOMATIC1111, ComfyUI, diffusers), peft, or auto (the family's: kohya for Stable Diffusion, peft in diffusers' names for PixArt)", def = "auto") String loraFormat) {}

    /** The run itself: model, folder, length, precision, device, checkpoints, logging. */
    public record Run(
        @Opt(help = "model folder to start from") String init,
        @Opt(help = "run folder") String out,
        @Opt(help = "optimizer steps", def = "1000") int steps,
        @Opt(help = "if > 0, train this many epochs instead of --steps", def = "0") int epochs,
        @Opt(help = "micro-batches per optimizer step", def = "1") int gradAccum,
        @Opt(help = "micro-batches of a step run at once on the CPU, each on its own thread with the cores shared among them (must divide grad_accum; not with LoRA or gradient checkpointing; 1: one after another)", def = "1") int concurrentMicroBatches,
        @Opt(help = "bf16 autocast for the forward passes", def = "false") boolean bf16,
        @Opt(help = "recompute U-Net blocks and decoder levels in the backward instead of keeping their activations (less memory, more time)", def = "false") boolean gradientCheckpointing,
        @Opt(help = "where the models run: cpu, cuda or cuda:N (CUDA needs the build with -Pgpu and an NVIDIA driver)", def = "cpu") String device,
        @Opt(help = "seed of the run: data order, noise and timesteps", def = "0") long seed,
        @Opt(help = "latest, or a checkpoint folder, to continue from") String resume,
        @Opt(help = "write a checkpoint every N steps (0: only at the end)", def = "500") int checkpointEvery,
        @Opt(help = "checkpoints to keep", def = "3") int keepCheckpoints,
        @Opt(help = "stop after this many steps with a non-finite loss (each is skipped)", def = "5") int maxNonfinite,
        @Opt(help = "log every N steps", def = "10") int logEvery) {}

    /** Held-out loss and samples while training. */
    public record Validation(
        @Opt(help = "validation loss every N steps (0: off)", def = "0") int valEvery,
        @Opt(help = "validation samples every N steps (0: off)", def = "0") int sampleEvery,
        @Opt(help = "prompts for validation samples", def = "") List<String> samplePrompts,
        @Opt(help = "sampling steps for validation samples", def = "25") int sampleSteps,
        @Opt(help = "guidance for validation samples", def = "4.5") double sampleGuidance,
        @Opt(help = "sampler for validation samples: ddim, euler, euler_a, dpmpp_2m", def = "ddim") String sampleSampler) {}

    public static final ObjectMapper JSON = new ObjectMapper()
        .setPropertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE)
        .enable(SerializationFeature.INDENT_OUTPUT)
        .enable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
        .enable(DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES)
        .disable(DeserializationFeature.ACCEPT_FLOAT_AS_INT);

    /** Every option at its default (init, data and out unset). */
    public static TrainConfig defaults() {
        return FlatOptions.bind(TrainConfig.class, JSON.createObjectNode(), JSON);
    }

    /** Defaults, overlaid with {@code overrides} (flat snake_case keys); unknown keys and values of the wrong type are refused by name. */
    public static TrainConfig from(JsonNode overrides) {
        TrainConfig c;
        try {
            c = FlatOptions.bind(TrainConfig.class, overrides, JSON);
        } catch (InvalidValueException e) {
            if (e.getMessage().endsWith("is not a known option")) throw new InvalidValueException(e.key(), "is not a training option");
            throw e;
        }
        return c.validated();
    }

    /** The flat JSON object of every option (the run folder's {@code config.json}). */
    public ObjectNode json() {
        return FlatOptions.toJson(this, JSON);
    }

    public String toJson() {
        try {
            return JSON.writeValueAsString(json());
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    /** The objectives a config can name; the one place a name becomes a type. */
    public enum Kind {
        SFT, DPO, SIMPO;

        static Kind of(String name) {
            for (Kind k : values()) if (k.name().equalsIgnoreCase(name)) return k;
            throw new InvalidValueException("objective", "'" + name + "' is not sft, dpo or simpo");
        }
    }

    public Kind kind() {
        return Kind.of(method.objective());
    }

    /** Whether the run trains LoRA adapters rather than the whole denoiser. */
    public boolean lora() {
        return adapters.loraRank() > 0;
    }

    /** The adapters' alpha: {@code lora_alpha}, or the rank where it is 0. */
    public double effectiveLoraAlpha() {
        return adapters.loraAlpha() > 0 ? adapters.loraAlpha() : adapters.loraRank();
    }

    /** Whether the objective needs a frozen reference model. */
    public boolean needsReference() {
        return kind() == Kind.DPO;
    }

    public boolean preference() {
        return kind() != Kind.SFT;
    }

    public PixelTerm pixelTerm() {
        return new PixelTerm(method.pixelWeight(), PixelDecode.of(method.pixelDecode()), method.pixelFraction(), method.pixelCrop(), method.pixelCropMargin(), method.decoderChunk());
    }

    /** The objective this config names, over {@code reference} where it needs one. */
    public Objective buildObjective(Denoiser reference) {
        return switch (kind()) {
            case SFT -> new Sft(method.latentWeight(), pixelTerm());
            case DPO -> new Dpo(reference, method.beta(), method.latentWeight(), pixelTerm());
            case SIMPO -> new Simpo(method.beta(), method.gamma(), method.latentWeight(), pixelTerm());
        };
    }

    /** The trainer's options for a run of {@code total} steps. */
    public Trainer.Options trainerOptions(long total) {
        return new Trainer.Options(total, run.gradAccum(), optimizer.lr(), optimizer.adamBeta1(), optimizer.adamBeta2(), optimizer.adamEps(), optimizer.weightDecay(), optimizer.warmupSteps(),
            optimizer.lrSchedule().equals("cosine"), optimizer.maxGradNorm(), optimizer.emaDecay(), run.bf16(), run.maxNonfinite(), run.seed());
    }

    TrainConfig validated() {
        kind();
        try {
            org.pixelpost.tensor.Engine.checkDeviceSpec(run.device());
        } catch (IllegalArgumentException e) {
            throw new InvalidValueException("device", e.getMessage());
        }
        PixelDecode.of(method.pixelDecode());
        Objectives.checkWeights(method.latentWeight(), pixelTerm()); // the pixel term's own options are checked by PixelTerm
        trainerOptions(Math.max(1, run.steps())); // and the optimizer's by Trainer.Options
        Checks.oneOf("lr_schedule", optimizer.lrSchedule(), "constant", "cosine");
        Checks.oneOf("on_bad_image", data.onBadImage(), "skip", "fail");
        Checks.oneOf("latent_sample", data.latentSample(), "mean", "sample");
        Checks.oneOf("on_bad_pair", data.onBadPair(), "skip", "fail");
        try {
            org.pixelpost.model.text.T5TextEncoder.dtype(data.textEncoderDtype());
        } catch (InvalidValueException e) {
            throw new InvalidValueException("text_encoder_dtype", e.getMessage().replaceFirst("^--text-encoder-dtype:?\\s*", ""));
        }
        if (run.init() == null) throw new InvalidValueException("init", "is required (the model folder to start from)");
        if (data.data() == null) throw new InvalidValueException("data", "is required (captions.jsonl folder or pairs.jsonl)");
        if (run.out() == null) throw new InvalidValueException("out", "is required (the run folder)");
        if (method.pixelDecoder() == null || method.pixelDecoder().isBlank()) throw new InvalidValueException("pixel_decoder", "is required (vae, taesd or a path)");
        Checks.positive("beta", method.beta());
        Checks.finite("gamma", method.gamma());
        Checks.atLeast("epochs", run.epochs(), 0);
        if (run.epochs() == 0) Checks.atLeast("steps", run.steps(), 1);
        Checks.atLeast("batch_size", data.batchSize(), 1);
        Checks.inRange("caption_dropout", data.captionDropout(), 0, 1);
        Checks.atLeast("checkpoint_every", run.checkpointEvery(), 0);
        Checks.atLeast("keep_checkpoints", run.keepCheckpoints(), 1);
        Checks.atLeast("log_every", run.logEvery(), 1);
        Checks.atLeast("val_every", validation.valEvery(), 0);
        Checks.atLeast("sample_every", validation.sampleEvery(), 0);
        Checks.atLeast("sample_steps", validation.sampleSteps(), 1);
        Checks.finite("sample_guidance", validation.sampleGuidance());
        try {
            org.pixelpost.sampling.Samplers.checkSteps(org.pixelpost.sampling.Samplers.Spec.parse(validation.sampleSampler(), List.of()), validation.sampleSteps());
        } catch (InvalidValueException e) {
            throw new InvalidValueException(e.key().equals("--steps") ? "sample_steps" : "sample_sampler", e.getMessage().substring(e.key().length() + 2));
        }
        org.pixelpost.lora.LoraTargets.of(adapters.loraTargets());
        if (!adapters.loraFormat().equalsIgnoreCase("auto")) org.pixelpost.lora.LoraLayout.written("lora_format", adapters.loraFormat());
        Checks.atLeast("lora_rank", adapters.loraRank(), 0);
        if (lora()) org.pixelpost.nn.Lora.checkOptions(adapters.loraRank(), adapters.loraAlpha(), adapters.loraDropout());
        else {
            TrainConfig d = defaults();
            if (!adapters.equals(d.adapters()))
                throw new InvalidValueException("lora_rank", "is 0 (full fine-tuning), but LoRA options are set; give --lora-rank to train adapters");
        }
        if (adapters.loraDropout() > 0 && run.gradientCheckpointing())
            throw new InvalidValueException("lora_dropout", "cannot be combined with gradient_checkpointing (the recomputed forward would draw other masks)");
        MicroBatchLanes.check(run.concurrentMicroBatches(), run.gradAccum(), lora(), run.gradientCheckpointing(), run.device().equals("cpu"));
        return this;
    }
}
