package org.pixelpost.train;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;
import java.util.List;
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
 * Everything a training run needs. The JSON keys are the field names in snake_case and each field
 * is also a command-line flag in kebab-case ({@code pixelWeight} = {@code "pixel_weight"} =
 * {@code --pixel-weight}); defaults follow the paper where it gives one.
 */
public record TrainConfig(
    @Doc("sft, dpo or simpo") String objective,
    @Doc("weight of the latent term (0: pixel only)") double latentWeight,
    @Doc("lambda (SFT) or mu (preference): weight of the pixel term; the paper uses 8 for DiT, 2 for U-Net; 0: latent only") double pixelWeight,
    @Doc("t: decode at the current timestep (Eq. 2); x0: decode the predicted clean latent (Eq. 8)") String pixelDecode,
    @Doc("pixel term on this random fraction of the batch (cost option; 1: all)") double pixelFraction,
    @Doc("pixel term on a random latent crop of this size (cost option; 0: the whole latent)") int pixelCrop,
    @Doc("latent pixels of context decoded around a crop and not compared") int pixelCropMargin,
    @Doc("run the decoder forward and backward on this many samples at a time, bounding its memory (0: whole batch)") int decoderChunk,
    @Doc("preference temperature beta on per-element mean errors (Diffusion-DPO's beta_dpo is twice this)") double beta,
    @Doc("SimPO target margin gamma (0 as in the paper)") double gamma,
    @Doc("frozen reference model folder for DPO (default: the --init model)") String reference,
    @Doc("model folder to start from") String init,
    @Doc("data folder: captions.jsonl (SFT) or pairs.jsonl (preference)") String data,
    @Doc("held-out data folder for validation loss (optional)") String valData,
    @Doc("run folder") String out,
    @Doc("optimizer steps") int steps,
    @Doc("if > 0, train this many epochs instead of --steps") int epochs,
    @Doc("samples (or pairs) per micro-batch") int batchSize,
    @Doc("micro-batches per optimizer step") int gradAccum,
    @Doc("micro-batches of a step run at once on the CPU, each on its own thread with the cores shared among them (must divide grad_accum; not with LoRA or gradient checkpointing; 1: one after another)") int concurrentMicroBatches,
    @Doc("peak learning rate") double lr,
    @Doc("Adam beta1") double adamBeta1,
    @Doc("Adam beta2") double adamBeta2,
    @Doc("Adam epsilon") double adamEps,
    @Doc("decoupled weight decay (the paper: 5e-6)") double weightDecay,
    @Doc("linear warm-up steps") int warmupSteps,
    @Doc("constant or cosine after warm-up") String lrSchedule,
    @Doc("clip the global gradient norm to this (0: off)") double maxGradNorm,
    @Doc("EMA decay of the weights (0: no EMA)") double emaDecay,
    @Doc("bf16 autocast for the forward passes") boolean bf16,
    @Doc("recompute U-Net blocks and decoder levels in the backward instead of keeping their activations (less memory, more time)") boolean gradientCheckpointing,
    @Doc("the decoder of the pixel term: vae (the model's own), taesd, or an autoencoder path over the same latents") String pixelDecoder,
    @Doc("random horizontal flips") boolean flip,
    @Doc("sample: each step trains on a fresh draw from the VAE's posterior, as diffusers' and kohya's scripts do; mean: on its mean (no effect for a deterministic autoencoder such as TAESD)") String latentSample,
    @Doc("probability that a caption is replaced by the empty prompt, which trains the unconditional prediction guidance needs") double captionDropout,
    @Doc("write a checkpoint every N steps (0: only at the end)") int checkpointEvery,
    @Doc("checkpoints to keep") int keepCheckpoints,
    @Doc("latest, or a checkpoint folder, to continue from") String resume,
    @Doc("stop after this many steps with a non-finite loss (each is skipped)") int maxNonfinite,
    @Doc("log every N steps") int logEvery,
    @Doc("validation loss every N steps (0: off)") int valEvery,
    @Doc("validation samples every N steps (0: off)") int sampleEvery,
    @Doc("prompts for validation samples") List<String> samplePrompts,
    @Doc("DDIM steps for validation samples") int sampleSteps,
    @Doc("guidance for validation samples") double sampleGuidance,
    @Doc("skip or fail on unreadable images") String onBadImage,
    @Doc("skip (with a count) or fail on preference pairs whose winner and loser are the same image") String onBadPair,
    @Doc("seed of the run: data order, noise and timesteps") long seed,
    @Doc("train LoRA adapters of this rank instead of the whole denoiser (0: full fine-tuning)") int loraRank,
    @Doc("LoRA alpha: the update is scaled by alpha / rank (0: alpha = rank)") double loraAlpha,
    @Doc("layers that get adapters: presets attention, ff, proj, conv, or regular expressions on layer paths") List<String> loraTargets,
    @Doc("dropout on the adapters' input while training") double loraDropout,
    @Doc("layout of the run's lora.safetensors: kohya (loads in AUTOMATIC1111, ComfyUI, diffusers) or peft") String loraFormat,
    @Doc("where the models run: cpu, cuda or cuda:N (CUDA needs the build with -Pgpu and an NVIDIA driver)") String device) {

    /** Help text of a field. */
    @Retention(RetentionPolicy.RUNTIME)
    @Target({ElementType.RECORD_COMPONENT, ElementType.PARAMETER, ElementType.FIELD, ElementType.METHOD})
    public @interface Doc {
        String value();
    }

    public static final ObjectMapper JSON = new ObjectMapper()
        .setPropertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE)
        .enable(SerializationFeature.INDENT_OUTPUT)
        .enable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
        .enable(DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES)
        .disable(DeserializationFeature.ACCEPT_FLOAT_AS_INT);

    public static TrainConfig defaults() {
        return new TrainConfig("sft", 1.0, 8.0, "t", 1.0, 0, 1, 0, 2500, 0, null, null, null, null, null, 1000, 0, 8, 1, 1,
            2e-5, 0.9, 0.999, 1e-8, 5e-6, 0, "constant", 1.0, 0.0, false, false, "vae", true, "sample", 0.1, 500, 3, null, 5, 10, 0, 0, List.of(), 25, 4.5,
            "skip", "skip", 0, 0, 0, org.pixelpost.lora.LoraTargets.DEFAULT, 0, "kohya", "cpu");
    }

    /** Defaults, overlaid with {@code overrides} (snake_case keys); unknown keys are refused by name. */
    public static TrainConfig from(JsonNode overrides) {
        ObjectNode merged = JSON.valueToTree(defaults());
        overrides.fields().forEachRemaining(e -> merged.set(e.getKey(), e.getValue()));
        try {
            return JSON.treeToValue(merged, TrainConfig.class).validated();
        } catch (com.fasterxml.jackson.databind.exc.UnrecognizedPropertyException e) {
            throw new InvalidValueException(e.getPropertyName(), "is not a training option");
        } catch (com.fasterxml.jackson.databind.JsonMappingException e) {
            String key = e.getPath().isEmpty() ? "config" : e.getPath().get(e.getPath().size() - 1).getFieldName();
            JsonNode given = key == null ? null : merged.get(key);
            String what = given == null || given.isNull() ? "null is not allowed" : given + " is not of the right type";
            String type = typeOf(key);
            throw new InvalidValueException(key == null ? "config" : key, what + (type == null ? "" : "; " + type + " is required"));
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new IllegalArgumentException("bad training config: " + e.getOriginalMessage());
        }
    }

    /** What a key's value must be, in words, or null for an unknown key. */
    private static String typeOf(String key) {
        if (key == null) return null;
        for (java.lang.reflect.RecordComponent rc : TrainConfig.class.getRecordComponents()) {
            if (!rc.getName().replaceAll("([a-z0-9])([A-Z])", "$1_$2").toLowerCase().equals(key)) continue;
            Class<?> t = rc.getType();
            if (t == int.class || t == long.class) return "an integer";
            if (t == double.class) return "a number";
            if (t == boolean.class) return "true or false";
            if (t == List.class) return "a list of strings";
            return "a string";
        }
        return null;
    }

    public String toJson() {
        try {
            return JSON.writeValueAsString(this);
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
        return Kind.of(objective);
    }

    /** Whether the run trains LoRA adapters rather than the whole denoiser. */
    public boolean lora() {
        return loraRank > 0;
    }

    /** The adapters' alpha: {@code lora_alpha}, or the rank where it is 0. */
    public double effectiveLoraAlpha() {
        return loraAlpha > 0 ? loraAlpha : loraRank;
    }

    /** Whether the objective needs a frozen reference model. */
    public boolean needsReference() {
        return kind() == Kind.DPO;
    }

    public boolean preference() {
        return kind() != Kind.SFT;
    }

    public PixelTerm pixelTerm() {
        return new PixelTerm(pixelWeight, PixelDecode.of(pixelDecode), pixelFraction, pixelCrop, pixelCropMargin, decoderChunk);
    }

    /** The objective this config names, over {@code reference} where it needs one. */
    public Objective buildObjective(Denoiser reference) {
        return switch (kind()) {
            case SFT -> new Sft(latentWeight, pixelTerm());
            case DPO -> new Dpo(reference, beta, latentWeight, pixelTerm());
            case SIMPO -> new Simpo(beta, gamma, latentWeight, pixelTerm());
        };
    }

    /** The trainer's options for a run of {@code total} steps. */
    public Trainer.Options trainerOptions(long total) {
        return new Trainer.Options(total, gradAccum, lr, adamBeta1, adamBeta2, adamEps, weightDecay, warmupSteps,
            lrSchedule.equals("cosine"), maxGradNorm, emaDecay, bf16, maxNonfinite, seed);
    }

    TrainConfig validated() {
        kind();
        try {
            org.pixelpost.tensor.Engine.checkDeviceSpec(device);
        } catch (IllegalArgumentException e) {
            throw new InvalidValueException("device", e.getMessage());
        }
        PixelDecode.of(pixelDecode);
        Objectives.checkWeights(latentWeight, pixelTerm()); // the pixel term's own options are checked by PixelTerm
        trainerOptions(Math.max(1, steps)); // and the optimizer's by Trainer.Options
        Checks.oneOf("lr_schedule", lrSchedule, "constant", "cosine");
        Checks.oneOf("on_bad_image", onBadImage, "skip", "fail");
        Checks.oneOf("latent_sample", latentSample, "mean", "sample");
        Checks.oneOf("on_bad_pair", onBadPair, "skip", "fail");
        if (init == null) throw new InvalidValueException("init", "is required (the model folder to start from)");
        if (data == null) throw new InvalidValueException("data", "is required (captions.jsonl folder or pairs.jsonl)");
        if (out == null) throw new InvalidValueException("out", "is required (the run folder)");
        if (pixelDecoder == null || pixelDecoder.isBlank()) throw new InvalidValueException("pixel_decoder", "is required (vae, taesd or a path)");
        Checks.positive("beta", beta);
        Checks.finite("gamma", gamma);
        Checks.atLeast("epochs", epochs, 0);
        if (epochs == 0) Checks.atLeast("steps", steps, 1);
        Checks.atLeast("batch_size", batchSize, 1);
        Checks.inRange("caption_dropout", captionDropout, 0, 1);
        Checks.atLeast("checkpoint_every", checkpointEvery, 0);
        Checks.atLeast("keep_checkpoints", keepCheckpoints, 1);
        Checks.atLeast("log_every", logEvery, 1);
        Checks.atLeast("val_every", valEvery, 0);
        Checks.atLeast("sample_every", sampleEvery, 0);
        Checks.atLeast("sample_steps", sampleSteps, 1);
        Checks.finite("sample_guidance", sampleGuidance);
        org.pixelpost.lora.LoraTargets.of(loraTargets);
        org.pixelpost.lora.LoraLayout.written("lora_format", loraFormat);
        Checks.atLeast("lora_rank", loraRank, 0);
        if (lora()) org.pixelpost.nn.Lora.checkOptions(loraRank, loraAlpha, loraDropout);
        else {
            TrainConfig d = defaults();
            if (loraAlpha != d.loraAlpha || loraDropout != d.loraDropout || !loraTargets.equals(d.loraTargets) || !loraFormat.equals(d.loraFormat))
                throw new InvalidValueException("lora_rank", "is 0 (full fine-tuning), but LoRA options are set; give --lora-rank to train adapters");
        }
        if (loraDropout > 0 && gradientCheckpointing)
            throw new InvalidValueException("lora_dropout", "cannot be combined with gradient_checkpointing (the recomputed forward would draw other masks)");
        MicroBatchLanes.check(concurrentMicroBatches, gradAccum, lora(), gradientCheckpointing, device.equals("cpu"));
        return this;
    }
}
