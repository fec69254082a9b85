package org.pixelpost.pipeline;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.TestData;
import org.pixelpost.data.Batches;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.tensorfile.SafeTensors;
import org.pixelpost.model.autoencoder.AutoencoderKL;
import org.pixelpost.model.denoiser.Denoiser;
import org.pixelpost.model.denoiser.Denoisers;
import org.pixelpost.model.denoiser.UNet2DCondition;
import org.pixelpost.model.text.ClipTextEncoder;
import org.pixelpost.model.text.ClipTextModel;
import org.pixelpost.model.text.ClipTokenizer;
import org.pixelpost.objective.Batch;
import org.pixelpost.objective.Dpo;
import org.pixelpost.objective.Objective;
import org.pixelpost.objective.PixelTerm;
import org.pixelpost.objective.PixelDecode;
import org.pixelpost.objective.Sft;
import org.pixelpost.objective.Simpo;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;
import org.pixelpost.train.Trainer;

/** A tiny model in Stable Diffusion's layout (the parity fixtures' U-Net and VAE, a narrow CLIP): folders, single files, sampling, training. */
class StableDiffusionTest {
    @TempDir static Path dir;
    static Path folder;

    static TextToImageModel tiny() throws Exception {
        return org.pixelpost.InMemory.tinyStableDiffusion();
    }

    @BeforeAll
    static void writeFolder() throws Exception {
        folder = dir.resolve("sd");
        try (TextToImageModel m = tiny()) {
            m.save(folder);
        }
    }

    static Tensor probe(TextToImageModel m) {
        try (Generator g = Generator.seeded(9); var ng = Tensors.noGrad()) {
            Tensor z = g.randn(2, 4, 8, 8);
            var text = m.textEncoder.encode(List.of("a red circle", ""));
            return m.denoiser.forward(z, Tensors.fromFloats(new float[] {10, 700}, 2), org.pixelpost.model.Conditioning.of(text.tokens(), text.mask()));
        }
    }

    @Test
    void aDiffusersFolderAndASingleFileLoadAsTheSameModel() throws Exception {
        for (String c : List.of("unet/config.json", "unet/diffusion_pytorch_model.safetensors", "vae/config.json", "text_encoder/config.json",
                "text_encoder/model.safetensors", "tokenizer/vocab.json", "tokenizer/merges.txt", "scheduler/scheduler_config.json", "model_index.json"))
            assertTrue(Files.isRegularFile(folder.resolve(c)), c);
        Path single = dir.resolve("sd.safetensors");
        try (TextToImageModel a = TextToImageModel.load(folder); Scope s = Scope.open()) {
            assertEquals("Stable Diffusion", a.family().displayName());
            assertEquals(16, a.imageSize);
            a.saveSingleFile(single);
            Map<String, Tensor> st = SafeTensors.read(single);
            long params = a.denoiser.module().parameters().size() + ((AutoencoderKL) a.autoencoder).stateDict().size()
                + ((ClipTextEncoder) a.textEncoder).model().parameters().size();
            assertEquals(params, st.size(), "one key per weight, nothing else");
            assertTrue(st.containsKey("model.diffusion_model.input_blocks.0.0.weight") && st.containsKey("model.diffusion_model.out.2.weight")
                && st.containsKey("first_stage_model.decoder.up.0.block.0.conv1.weight") && st.containsKey("first_stage_model.encoder.mid.attn_1.q.weight")
                && st.containsKey("cond_stage_model.transformer.text_model.final_layer_norm.weight"), "original LDM names");
            assertEquals(4, st.get("first_stage_model.encoder.mid.attn_1.q.weight").dim(), "LDM's 1x1-conv attention weights");
            Tensor ya = probe(a);
            // single file back to a diffusers folder: every tensor bit-identical, no key missing or left over
            try (TextToImageModel b = TextToImageModel.load(single, LoadOptions.defaults().withConfigs(folder))) {
                b.save(dir.resolve("back"));
                assertTrue(torch.equal(ya, probe(b)));
            }
            for (String f : List.of("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors")) {
                Map<String, Tensor> x = SafeTensors.read(folder.resolve(f)), y = SafeTensors.read(dir.resolve("back").resolve(f));
                assertEquals(x.keySet(), y.keySet(), f);
                for (String k : x.keySet()) assertTrue(torch.equal(x.get(k), y.get(k)), f + " " + k);
            }
        }
    }

    @Test
    void samplesWithNegativePromptsAtAnySizeTheAutoencoderAllows() throws Exception {
        try (TextToImageModel m = TextToImageModel.load(folder); Scope s = Scope.open()) {
            Sampler.Settings st = new Sampler.Settings(3, 7.5, 0, 32);
            Tensor plain = m.sampler().sample(List.of("a red circle"), new long[] {1}, st, null);
            Tensor neg = m.sampler().sample(List.of("a red circle"), List.of("blurry"), new long[] {1}, st, null);
            assertArrayEquals(new long[] {1, 3, 32, 32}, Tensors.shape(plain));
            assertTrue(Double.isFinite(Tensors.item(neg.sum())));
            assertFalse(torch.equal(plain, neg), "the negative prompt steers the guidance");
            var e = assertThrows(IllegalArgumentException.class, () -> m.sampler().sample(List.of("x"), new long[] {1}, new Sampler.Settings(2, 7.5, 0, 17), null));
            assertTrue(e.getMessage().contains("--size") && e.getMessage().contains("17"), e.getMessage());
        }
    }

    @Test
    void weightsKeptInBf16SampleNearlyTheSameImagesAndRefuseTraining() throws Exception {
        try (TextToImageModel m = TextToImageModel.load(folder); Scope s = Scope.open()) {
            Sampler.Settings st = new Sampler.Settings(4, 7.5, 0);
            Tensor fp32 = m.sampler().sample(List.of("a red circle", "a blue square"), new long[] {1, 2}, st, null);
            m.toBf16Weights();
            assertEquals(torch.ScalarType.BFloat16, m.denoiser.module().parameters().get("conv_in.weight").scalar_type().intern());
            Tensor bf16 = m.sampler().sample(List.of("a red circle", "a blue square"), new long[] {1, 2}, st, null);
            double diff = Tensors.item(fp32.sub(bf16).abs().mean());
            assertTrue(diff < 0.02, "mean pixel difference " + diff);
            Batches none = new Batches() {
                @Override public Batch get(long step, int micro) { return null; }
                @Override public long size() { return 1; }
            };
            var e = assertThrows(IllegalArgumentException.class, () -> new Trainer(m, none, new Sft(1, PixelTerm.off()), Trainer.Options.defaults()));
            assertTrue(e.getMessage().contains("fp32"), e.getMessage());
        }
    }

    @Test
    void trainsWithEveryObjectiveWithAndWithoutThePixelTerm() throws Exception {
        try (TextToImageModel m = TextToImageModel.load(folder); Denoiser reference = Denoisers.load(folder.resolve("unet"), null)) {
            reference.module().freeze();
            Batch sft, pairs;
            try (Generator g = Generator.seeded(4); var ng = Tensors.noGrad()) {
                var text = m.textEncoder.encode(List.of("a red circle", "a blue square"));
                Tensor zw = m.encodeImages(g.rand(2, 3, 16, 16)), zl = m.encodeImages(g.rand(2, 3, 16, 16));
                sft = Batch.of(zw, text.tokens(), text.mask());
                pairs = Batch.pairs(zw, zl, text.tokens(), text.mask());
            }
            for (double mu : new double[] {0, 4}) {
                PixelTerm p = mu == 0 ? PixelTerm.off() : PixelTerm.of(mu);
                for (Objective obj : List.<Objective>of(new Sft(1, p), new Dpo(reference, 2500, 1, p), new Simpo(100, 0, 1, p))) {
                    Batch b = obj.preference() ? pairs : sft;
                    Batches data = new Batches() {
                        @Override public Batch get(long step, int micro) { return b; }
                        @Override public long size() { return 2; }
                    };
                    Tensor before = m.denoiser.module().parameters().get("conv_in.weight").clone();
                    try (Trainer t = new Trainer(m, data, obj, Trainer.Options.defaults().withSteps(2).withLr(1e-3))) {
                        Map<String, Double> last = t.run();
                        assertTrue(Double.isFinite(last.get("loss")), obj + ": " + last);
                        if (mu > 0) assertTrue(last.containsKey(obj.preference() ? "pixel_loss" : "pixel"), obj + ": " + last);
                    }
                    assertFalse(torch.equal(before, m.denoiser.module().parameters().get("conv_in.weight")), obj + " trained");
                }
            }
        }
    }

    /** The loss and every U-Net parameter's gradient of one SFT + pixel step (seeded), with or without checkpointing. */
    static double[] step(TextToImageModel m, Batch b, boolean checkpoint, List<Tensor> grads) {
        m.denoiser.module().gradientCheckpointing(checkpoint);
        m.autoencoder.decoder().gradientCheckpointing(checkpoint);
        try (Generator g = Generator.seeded(21)) {
            var ctx = new org.pixelpost.objective.StepContext(m.denoiser, m.noiseSchedule(), m.predictionType(), m::decodeLatents, g);
            var loss = new Sft(1, PixelTerm.of(4)).loss(ctx, b);
            loss.loss().backward(); // an ordinary backward: checkpointed segments recompute themselves in it
            for (Tensor t : m.denoiser.module().parameters().values()) {
                grads.add(t.grad().detach().clone());
                t.grad().zero_();
            }
            return new double[] {loss.terms().get("loss"), loss.terms().get("pixel")};
        }
    }

    @Test
    void gradientCheckpointingGivesTheSameLossAndGradients() throws Exception {
        try (TextToImageModel m = TextToImageModel.load(folder); Scope s = Scope.open()) {
            Batch b;
            try (Generator g = Generator.seeded(5); var ng = Tensors.noGrad()) {
                var text = m.textEncoder.encode(List.of("a red circle", "a blue square"));
                b = Batch.of(m.encodeImages(g.rand(2, 3, 16, 16)), text.tokens(), text.mask());
            }
            List<Tensor> plain = new java.util.ArrayList<>(), ckpt = new java.util.ArrayList<>();
            double[] a = step(m, b, false, plain), c = step(m, b, true, ckpt);
            assertEquals(a[0], c[0], 1e-6, "loss");
            assertEquals(a[1], c[1], 1e-6, "pixel term");
            double worst = 0, scale = 0;
            for (int i = 0; i < plain.size(); i++) {
                worst = Math.max(worst, Tensors.item(plain.get(i).sub(ckpt.get(i)).abs().max()));
                scale = Math.max(scale, Tensors.item(plain.get(i).abs().max()));
            }
            assertTrue(scale > 0, "gradients flowed");
            assertTrue(worst <= 1e-5 * scale, "largest gradient difference " + worst + " of " + scale);
        }
    }

    @Test
    void dpoAndValidationRunWithGradientCheckpointing() throws Exception {
        try (TextToImageModel m = TextToImageModel.load(folder); Denoiser reference = Denoisers.load(folder.resolve("unet"), null)) {
            reference.module().freeze();
            m.denoiser.module().gradientCheckpointing(true);
            m.autoencoder.decoder().gradientCheckpointing(true);
            Batch pairs;
            try (Generator g = Generator.seeded(6); var ng = Tensors.noGrad()) {
                var text = m.textEncoder.encode(List.of("a red circle", "a blue square"));
                pairs = Batch.pairs(m.encodeImages(g.rand(2, 3, 16, 16)), m.encodeImages(g.rand(2, 3, 16, 16)), text.tokens(), text.mask());
            }
            // the reference's pixel term and validation run without gradients: nothing is recorded for them
            Dpo dpo = new Dpo(reference, 2500, 1, PixelTerm.of(4));
            Batches data = new Batches() {
                @Override public Batch get(long step, int micro) { return pairs; }
                @Override public long size() { return 2; }
            };
            try (Trainer t = new Trainer(m, data, dpo, Trainer.Options.defaults().withSteps(2).withLr(1e-3))) {
                assertTrue(Double.isFinite(t.run().get("pixel_loss")));
                assertTrue(Double.isFinite(t.evaluate(List.of(pairs), 1).get("loss")));
            }
        }
    }

    @Test
    void inputsUsersGetWrongAreRefusedByName() throws Exception {
        // a folder missing a component
        Path broken = dir.resolve("broken");
        Files.createDirectories(broken);
        Files.copy(folder.resolve("model_index.json"), broken.resolve("model_index.json"));
        BadFileException e = assertThrows(BadFileException.class, () -> TextToImageModel.load(broken));
        assertTrue(e.getMessage().contains("unet/") && e.getMessage().contains("missing"), e.getMessage());
        // a block type that is not built
        Path odd = dir.resolve("odd-unet");
        Files.createDirectories(odd);
        ObjectNode cfg = (ObjectNode) new ObjectMapper().readTree(folder.resolve("unet/config.json").toFile());
        cfg.putArray("down_block_types").add("CrossAttnDownBlock2D").add("SimpleCrossAttnDownBlock2D");
        Files.writeString(odd.resolve("config.json"), cfg.toString());
        Files.copy(folder.resolve("unet/diffusion_pytorch_model.safetensors"), odd.resolve("diffusion_pytorch_model.safetensors"));
        e = assertThrows(BadFileException.class, () -> UNet2DCondition.load(odd));
        assertTrue(e.getMessage().contains("SimpleCrossAttnDownBlock2D") && e.getMessage().contains("config.json"), e.getMessage());
        // single files of other families, and fp16 weights with NaNs
        try (Scope s = Scope.open()) {
            Tensor w = Tensors.fromFloats(new float[] {1, 2}, 2);
            Path xl = dir.resolve("xl.safetensors"), sd2 = dir.resolve("sd2.safetensors");
            SafeTensors.write(xl, Map.of("conditioner.embedders.0.transformer.text_model.final_layer_norm.weight", w, "model.diffusion_model.out.2.bias", w));
            SafeTensors.write(sd2, Map.of("cond_stage_model.model.ln_final.weight", w, "model.diffusion_model.out.2.bias", w));
            assertTrue(assertThrows(BadFileException.class, () -> TextToImageModel.load(xl)).getMessage().contains("SDXL"));
            assertTrue(assertThrows(BadFileException.class, () -> TextToImageModel.load(sd2)).getMessage().contains("SD 2"));
            Path nan = dir.resolve("nan");
            Files.createDirectories(nan);
            Files.copy(folder.resolve("unet/config.json"), nan.resolve("config.json"));
            Map<String, Tensor> st = new java.util.LinkedHashMap<>(SafeTensors.read(folder.resolve("unet/diffusion_pytorch_model.safetensors")));
            st.replaceAll((k, t) -> t.to(torch.ScalarType.Half));
            st.put("conv_in.bias", torch.full(Tensors.shape(st.get("conv_in.bias")), new org.bytedeco.pytorch.Scalar(Double.NaN)).to(torch.ScalarType.Half));
            SafeTensors.write(nan.resolve("diffusion_pytorch_model.safetensors"), st);
            try (UNet2DCondition u = UNet2DCondition.load(nan)) {
                assertFalse(torch.isfinite(u.parameters().get("conv_in.bias")).all().item().toBool(), "fp16 loads into fp32");
            }
            Path nanSd = dir.resolve("nan-sd");
            TestData.copyTree(folder, nanSd);
            Files.copy(nan.resolve("diffusion_pytorch_model.safetensors"), nanSd.resolve("unet/diffusion_pytorch_model.safetensors"),
                java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            e = assertThrows(BadFileException.class, () -> TextToImageModel.load(nanSd));
            assertTrue(e.getMessage().contains("conv_in.bias") && e.getMessage().contains("NaN"), e.getMessage());
        }
    }
}
