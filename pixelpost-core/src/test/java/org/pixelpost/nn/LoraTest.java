package org.pixelpost.nn;

import static org.junit.jupiter.api.Assertions.*;

import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;
import org.pixelpost.InMemory;
import org.pixelpost.TestData;
import org.pixelpost.data.Batches;
import org.pixelpost.model.denoiser.Denoiser;
import org.pixelpost.model.denoiser.Denoisers;
import org.pixelpost.model.denoiser.UNet2DCondition;
import org.pixelpost.objective.Batch;
import org.pixelpost.objective.Dpo;
import org.pixelpost.objective.PixelTerm;
import org.pixelpost.objective.Sft;
import org.pixelpost.objective.StepContext;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.schedule.NoiseSchedule;
import org.pixelpost.schedule.PredictionType;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;
import org.pixelpost.train.Trainer;
import org.pixelpost.nn.Lora.Adapter;

class LoraTest {
    static final List<String> UNET_ATTENTION = List.of(".to_q", ".to_k", ".to_v", ".to_out.0");

    static Tensor run(Denoiser d, Tensor z, Tensor t, Tensor ctx) {
        try (var g = Tensors.noGrad()) {
            return d.forward(z, t, org.pixelpost.model.Conditioning.of(ctx, null));
        }
    }

    @Test
    void adaptersStartAtTheBaseModelMergeExactlyAndSwitchOff() throws Exception {
        try (UNet2DCondition u = UNet2DCondition.load(TestData.shared().resolve("oracle/unet_tiny")); Generator g = Generator.seeded(1);
             Scope s = Scope.open()) {
            Tensor z = g.randn(2, 4, 8, 8), t = Tensors.fromFloats(new float[] {10, 600}, 2), ctx = g.randn(2, 77, 32);
            Tensor base = run(u, z, t, ctx);
            List<String> keys = List.copyOf(u.parameters().keySet());
            List<String> paths = Lora.attach(u, p -> UNET_ATTENTION.stream().anyMatch(p::endsWith) || p.endsWith(".proj_in"), 4, 8, 0, g);
            assertTrue(paths.stream().anyMatch(p -> p.endsWith("attn1.to_q")) && paths.stream().anyMatch(p -> p.endsWith(".proj_in")), paths.toString());
            assertTrue(u.parameters().keySet().containsAll(keys), "the base keys are unchanged");
            assertTrue(torch.equal(base, run(u, z, t, ctx)), "B starts at zero: step 0 is the base model exactly");
            assertTrue(u.trainableParameters().keySet().stream().allMatch(k -> k.contains(".lora_")));
            assertEquals(4, u.parameters().get(paths.get(0) + ".lora_A.weight").size(0));
            try (var ng = Tensors.noGrad()) {
                for (Lora.Adapter a : Lora.adapters(u).values()) a.up().copy_(g.randn(Tensors.shape(a.up())).mul(Tensors.s(0.1)));
            }
            Tensor adapted = run(u, z, t, ctx);
            assertFalse(torch.equal(base, adapted));
            Lora.enable(u, false);
            assertTrue(torch.equal(base, run(u, z, t, ctx)), "adapters off: the base model");
            Lora.enable(u, true);
            Lora.merge(u);
            Tensor merged = run(u, z, t, ctx);
            assertTrue(Tensors.item(merged.sub(adapted).abs().max()) < 1e-5, "merged equals unmerged");
            // a reference taken after merging is the merged model: its forward leaves the merged adapters off
            assertTrue(torch.equal(merged, run(Denoisers.withoutAdapters(u), z, t, ctx)));
            assertTrue(torch.equal(merged, run(u, z, t, ctx)), "the adapters stay off after the reference's forward");
        }
    }

    @Test
    void loraDpoUsesTheBaseAsItsReferenceWithoutASecondCopyAndTrainsOnlyTheAdapters() throws Exception {
        Engine.seed(2);
        try (TextToImageModel m = InMemory.model(InMemory.ditConfig(16), 16); Generator g = Generator.seeded(3); Scope s = Scope.open()) {
            Batch pairs;
            try (var ng = Tensors.noGrad()) {
                var text = m.textEncoder.encode(List.of("a", "b"));
                pairs = Batch.pairs(m.encodeImages(g.rand(2, 3, 8, 8)), m.encodeImages(g.rand(2, 3, 8, 8)), text.tokens(), text.mask());
                for (Tensor p : m.denoiser.module().parameters().values()) p.add_(g.randnLike(p).mul(Tensors.s(0.05)));
            }
            Map<String, Tensor> baseWeights = Map.copyOf(m.denoiser.module().parameters());
            Lora.attach(m.denoiser.module(), p -> p.contains(".attn.") || p.contains(".cross_attn."), 2, 2, 0, g);
            Denoiser reference = Denoisers.withoutAdapters(m.denoiser);
            for (Map.Entry<String, Tensor> e : baseWeights.entrySet())
                assertEquals(e.getValue().data_ptr().address(), reference.module().parameters().get(e.getKey()).data_ptr().address(),
                    "one copy of the base weights: " + e.getKey());
            Dpo dpo = new Dpo(reference, 2500, 1, PixelTerm.of(4));
            StepContext ctx = new StepContext(m.denoiser, m.noiseSchedule(), m.predictionType(), m::decodeLatents, Generator.seeded(9));
            double atStart = dpo.loss(ctx, pairs).terms().get("loss");
            assertEquals(5 * Math.log(2), atStart, 1e-5, "model == reference at step 0: (1 + mu) ln 2");
            Batches data = new Batches() {
                @Override public Batch get(long step, int micro) { return pairs; }
                @Override public long size() { return 2; }
            };
            Tensor qkv = m.denoiser.module().parameters().get("blocks.0.attn.qkv.weight").clone();
            try (Trainer t = new Trainer(m, data, dpo, Trainer.Options.defaults().withSteps(3).withLr(1e-2))) {
                assertTrue(Double.isFinite(t.run().get("loss")));
            }
            assertTrue(torch.equal(qkv, m.denoiser.module().parameters().get("blocks.0.attn.qkv.weight")), "the base weights are not trained");
            assertTrue(Lora.adapters(m.denoiser.module()).values().stream().anyMatch(a -> Tensors.item(a.up().abs().sum()) > 0), "the adapters are");
        }
    }

    /** The tiny in-memory model, built the same every time (weights perturbed off their initial values). */
    static TextToImageModel build() {
        Engine.seed(2);
        TextToImageModel m = InMemory.model(InMemory.ditConfig(16), 16);
        try (Generator g = Generator.seeded(3); var ng = Tensors.noGrad()) {
            for (Tensor p : m.denoiser.module().parameters().values()) p.add_(g.randnLike(p).mul(Tensors.s(0.05)));
        }
        return m;
    }

    static final java.util.function.Predicate<String> DIT_ATTENTION = p -> p.contains(".attn.") || p.contains(".cross_attn.");

    static Map<String, Double> dpoTerms(Dpo dpo, TextToImageModel m, Batch pairs) {
        try (Generator g = Generator.seeded(9)) {
            return dpo.loss(new StepContext(m.denoiser, m.noiseSchedule(), m.predictionType(), m::decodeLatents, g), pairs).terms();
        }
    }

    @Test
    void loraDpoWithThePixelTermMatchesFullModelDpoWhoseReferenceIsTheBase() throws Exception {
        try (TextToImageModel m = build(); TextToImageModel full = build(); TextToImageModel base = build(); Generator g = Generator.seeded(4);
             Scope s = Scope.open()) {
            Batch pairs;
            try (var ng = Tensors.noGrad()) {
                var text = m.textEncoder.encode(List.of("a", "b"));
                pairs = Batch.pairs(m.encodeImages(g.rand(2, 3, 8, 8)), m.encodeImages(g.rand(2, 3, 8, 8)), text.tokens(), text.mask());
            }
            Lora.attach(m.denoiser.module(), DIT_ATTENTION, 2, 4, 0, g);
            Dpo lora = new Dpo(Denoisers.withoutAdapters(m.denoiser), 2500, 1, PixelTerm.of(4));
            Dpo fullModel = new Dpo(base.denoiser, 2500, 1, PixelTerm.of(4));
            // step 0: the same noise and timesteps give the same terms
            Map<String, Double> a = dpoTerms(lora, m, pairs), b = dpoTerms(fullModel, full, pairs);
            assertEquals(b.keySet(), a.keySet());
            assertTrue(a.containsKey("pixel_loss"), a.toString());
            for (String k : b.keySet()) assertEquals(b.get(k), a.get(k), 1e-6, k);
            // trained adapters against the same update merged into a full copy
            try (var ng = Tensors.noGrad()) {
                for (Adapter ad : Lora.adapters(m.denoiser.module()).values()) ad.up().copy_(g.randnLike(ad.up()).mul(Tensors.s(0.2)));
            }
            org.pixelpost.lora.LoraWeights.of(org.pixelpost.lora.LoraWeights.components(m.denoiser))
                .merge(org.pixelpost.lora.LoraWeights.components(full.denoiser), 1);
            a = dpoTerms(lora, m, pairs);
            b = dpoTerms(fullModel, full, pairs);
            assertTrue(Math.abs(a.get("loss") - 5 * Math.log(2)) > 1e-3, "the adapters moved the model off the reference: " + a);
            // the errors agree to float32 rounding; the loss multiplies their differences by beta = 2500
            for (String k : List.of("model_w", "model_l")) assertEquals(b.get(k), a.get(k), 1e-5 * Math.abs(b.get(k)), k);
            for (String k : b.keySet()) assertEquals(b.get(k), a.get(k), 1e-3 * Math.max(1, Math.abs(b.get(k))), k + ": " + a + " vs " + b);
        }
    }

    static Batches sftData(TextToImageModel m) {
        Batch batch;
        try (Generator g = Generator.seeded(6); var ng = Tensors.noGrad()) {
            var text = m.textEncoder.encode(List.of("a red circle", "a blue square"));
            batch = Batch.of(m.encodeImages(g.rand(2, 3, 8, 8)), text.tokens(), text.mask());
        }
        return new Batches() {
            @Override public Batch get(long step, int micro) { return batch; }
            @Override public long size() { return 2; }
        };
    }

    @Test
    void aLoraRunCheckpointsOnlyTheAdaptersAndResumesExactlyWithDropout(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir) throws Exception {
        Trainer.Options o = Trainer.Options.defaults().withSteps(4).withLr(1e-2).withEmaDecay(0.9);
        Map<String, Tensor> straight;
        try (Scope s = Scope.open(); TextToImageModel m = build(); Generator g = Generator.seeded(5)) {
            Lora.attach(m.denoiser.module(), DIT_ATTENTION, 2, 2, 0.25, g);
            try (Trainer t = new Trainer(m, sftData(m), new Sft(1, PixelTerm.of(2)), o)) {
                t.run();
            }
            straight = new java.util.LinkedHashMap<>();
            for (Map.Entry<String, Tensor> e : m.denoiser.module().trainableParameters().entrySet()) straight.put(e.getKey(), s.keep(e.getValue().clone()));
        }
        try (Scope s = Scope.open(); TextToImageModel m = build(); Generator g = Generator.seeded(5)) {
            Lora.attach(m.denoiser.module(), DIT_ATTENTION, 2, 2, 0, g);
            try (Trainer t = new Trainer(m, sftData(m), new Sft(1, PixelTerm.of(2)), o)) {
                t.run();
            }
            Map<String, Tensor> noDropout = m.denoiser.module().trainableParameters();
            assertTrue(straight.keySet().stream().anyMatch(k -> !torch.equal(straight.get(k), noDropout.get(k))), "the dropout masks do act");
        }
        java.nio.file.Path ckpt;
        try (Scope s = Scope.open(); TextToImageModel m = build(); Generator g = Generator.seeded(5)) {
            Lora.attach(m.denoiser.module(), DIT_ATTENTION, 2, 2, 0.25, g);
            try (Trainer t = new Trainer(m, sftData(m), new Sft(1, PixelTerm.of(2)), o)) {
                t.checkpointer(new org.pixelpost.train.Checkpointer(dir, 0, 3));
                t.trainStep();
                t.trainStep();
                ckpt = t.checkpoint();
            }
        }
        var saved = org.pixelpost.train.Checkpointer.read(ckpt, List.of("denoiser", "ema"));
        assertFalse(saved.parts().get("denoiser").isEmpty());
        assertTrue(saved.parts().get("denoiser").keySet().stream().allMatch(k -> k.endsWith(".lora_A.weight") || k.endsWith(".lora_B.weight")),
            "only the adapters are checkpointed: " + saved.parts().get("denoiser").keySet());
        assertEquals(saved.parts().get("denoiser").keySet(), saved.parts().get("ema").keySet(), "and only they have an EMA");
        try (Scope s = Scope.open(); TextToImageModel m = build(); Generator g = Generator.seeded(5)) {
            Lora.attach(m.denoiser.module(), DIT_ATTENTION, 2, 2, 0.25, g);
            try (Trainer t = new Trainer(m, sftData(m), new Sft(1, PixelTerm.of(2)), o)) {
                t.resume(ckpt);
                t.run();
            }
            Map<String, Tensor> resumed = m.denoiser.module().trainableParameters();
            assertEquals(straight.keySet(), resumed.keySet());
            for (String k : straight.keySet()) assertTrue(torch.equal(straight.get(k), resumed.get(k)), "resumed exactly, dropout masks included: " + k);
            assertTrue(Lora.adapters(m.denoiser.module()).values().stream().anyMatch(a -> Tensors.item(a.up().abs().sum()) > 0));
        }
    }
}
