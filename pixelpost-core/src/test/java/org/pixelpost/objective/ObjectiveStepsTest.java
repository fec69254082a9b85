package org.pixelpost.objective;

import static org.junit.jupiter.api.Assertions.*;

import java.util.ArrayList;
import java.util.List;
import java.util.function.UnaryOperator;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;
import org.pixelpost.schedule.NoiseSchedule;
import org.pixelpost.schedule.PredictionType;
import org.pixelpost.nn.Module;
import org.pixelpost.model.denoiser.DiT;
import org.pixelpost.model.denoiser.Denoiser;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

class ObjectiveStepsTest {
    static DiT.Config micro() {
        return new DiT.Config(4, 4, 4, 2, 32, 2, 2, 2.0, 16);
    }

    /** A denoiser that remembers what it was given. */
    static final class Recording implements Denoiser {
        final Denoiser inner;
        final List<Tensor> zT = new ArrayList<>(), t = new ArrayList<>();

        Recording(Denoiser inner) {
            this.inner = inner;
        }

        @Override
        public Tensor forward(Tensor z, Tensor tt, org.pixelpost.model.Conditioning cond) {
            zT.add(z.detach().clone());
            t.add(tt.clone());
            return inner.forward(z, tt, cond);
        }

        @Override public Module module() { return inner.module(); }
        @Override public String className() { return inner.className(); }
        @Override public com.fasterxml.jackson.databind.node.ObjectNode configJson() { return inner.configJson(); }
        @Override public void save(java.nio.file.Path dir) {}
        @Override public void close() {}
    }

    static final UnaryOperator<Tensor> DECODE = z -> torch.tanh(z).mul(Tensors.s(0.5)).add(Tensors.s(0.5)); // a stand-in decoder

    static StepContext ctx(Denoiser model, long seed) {
        return new StepContext(model, NoiseSchedule.sd(), PredictionType.EPSILON, DECODE, Generator.seeded(seed));
    }

    @Test
    void dpoAtItsReferenceIsLnTwoAndWinnerAndLoserShareNoiseAndTimestep() throws Exception {
        Engine.seed(1);
        DiT model = new DiT(micro());
        // leave the zero initialisation so that the outputs, and the margins, are not trivially zero
        try (var g = Tensors.noGrad()) {
            for (Tensor p : model.parameters().values()) p.add_(torch.randn_like(p).mul(Tensors.s(0.05)));
        }
        DiT reference = new DiT(micro());
        reference.load(model.snapshot(), java.nio.file.Path.of("snapshot"));
        Recording rec = new Recording(model);
        try (Scope s = Scope.open()) {
            Tensor zW = torch.randn(3, 4, 4, 4), zL = torch.randn(3, 4, 4, 4), tokens = torch.randn(3, 5, 16);
            Tensor mask = torch.ones(3, 5).to(torch.ScalarType.Bool);
            Loss r = new Dpo(reference, 2500, 1, PixelTerm.of(8)).loss(ctx(rec, 11), Batch.pairs(zW, zL, tokens, mask));
            assertEquals(Math.log(2), r.terms().get("latent_loss"), 1e-6);
            assertEquals(Math.log(2), r.terms().get("pixel_loss"), 1e-6);
            assertEquals(Math.log(2) * 9, r.terms().get("loss"), 1e-5); // L_latent + mu L_pixel with mu = 8
            assertTrue(r.terms().get("model_w") > 0.1, "the model's errors are not trivially zero");
            // one forward of [winners; losers]: same timesteps, and z_t - sqrt(a) z is the same noise
            Tensor zT = rec.zT.get(0), t = rec.t.get(0);
            assertTrue(torch.equal(t.narrow(0, 0, 3), t.narrow(0, 3, 3)));
            NoiseSchedule sch = NoiseSchedule.sd();
            Tensor noiseW = zT.narrow(0, 0, 3).sub(sch.addNoise(zW, torch.zeros_like(zW), t.narrow(0, 0, 3)));
            Tensor noiseL = zT.narrow(0, 3, 3).sub(sch.addNoise(zL, torch.zeros_like(zL), t.narrow(0, 3, 3)));
            assertTrue(Tensors.item(noiseW.sub(noiseL).abs().max()) < 1e-5, "winner and loser share the noise");
            assertTrue(Tensors.item(noiseW.abs().max()) > 0.01);
            // different pairs draw different noise and (almost surely) different timesteps
            assertFalse(torch.equal(noiseW.select(0, 0), noiseW.select(0, 1)));
        }
    }

    @Test
    void dpoWithACropComparesModelAndReferenceOnTheSameRegion() throws Exception {
        Engine.seed(6);
        DiT model = new DiT(micro());
        try (var g = Tensors.noGrad()) {
            for (Tensor p : model.parameters().values()) p.add_(torch.randn_like(p).mul(Tensors.s(0.05)));
        }
        DiT reference = new DiT(micro());
        reference.load(model.snapshot(), java.nio.file.Path.of("snapshot"));
        Dpo crop = new Dpo(reference, 2500, 1, new PixelTerm(8, PixelDecode.T, 1, 2, 1, 0));
        StepContext c = ctx(model, 12);
        try (Scope s = Scope.open()) {
            Tensor zW = torch.randn(3, 4, 4, 4), zL = torch.randn(3, 4, 4, 4), tokens = torch.randn(3, 5, 16);
            Tensor mask = torch.ones(3, 5).to(torch.ScalarType.Bool);
            for (int k = 0; k < 4; k++) {
                Loss r = crop.loss(c, Batch.pairs(zW, zL, tokens, mask));
                assertEquals(Math.log(2), r.terms().get("pixel_loss"), 1e-6, "the same crop for model and reference");
            }
        }
    }

    @Test
    void simpoPrefersTheLowerWinnerError() {
        Engine.seed(2);
        DiT model = new DiT(micro());
        try (var g = Tensors.noGrad()) {
            for (Tensor p : model.parameters().values()) p.add_(torch.randn_like(p).mul(Tensors.s(0.05)));
        }
        try (Scope s = Scope.open()) {
            Tensor z = torch.randn(4, 4, 4, 4), tokens = torch.randn(4, 5, 16);
            Tensor mask = torch.ones(4, 5).to(torch.ScalarType.Bool);
            // winner == loser: the same errors up to float32 summation order (rows of one batch can round
            // differently, ~1e-7, which beta 2500 scales to a margin of ~1e-4), so the loss is ln 2
            Simpo simpo = new Simpo(2500, 0, 1, PixelTerm.off());
            Loss same = simpo.loss(ctx(model, 13), Batch.pairs(z, z, tokens, mask));
            assertEquals(Math.log(2), same.terms().get("loss"), 1e-3);
            assertEquals(0.0, same.terms().get("margin"), 2e-3);
            // swapping winner and loser mirrors the margin
            Tensor other = torch.randn(4, 4, 4, 4);
            Loss a = simpo.loss(ctx(model, 3), Batch.pairs(z, other, tokens, mask));
            Loss b = simpo.loss(ctx(model, 3), Batch.pairs(other, z, tokens, mask));
            assertEquals(a.terms().get("margin"), -b.terms().get("margin"), 1e-5 * Math.abs(a.terms().get("margin")) + 1e-4);
            assertEquals(a.terms().get("model_w"), b.terms().get("model_l"), 1e-6);
            // the pair with the lower winner error has the lower loss
            boolean aBetter = a.terms().get("model_w") < a.terms().get("model_l");
            assertEquals(aBetter, a.terms().get("loss") < b.terms().get("loss"));
        }
    }

    @Test
    void sftTermsAndPixelFraction() {
        Engine.seed(4);
        DiT model = new DiT(micro());
        try (Scope s = Scope.open()) {
            Tensor z = torch.randn(4, 4, 4, 4), tokens = torch.randn(4, 5, 16);
            Tensor mask = torch.ones(4, 5).to(torch.ScalarType.Bool);
            Loss r = new Sft(1, PixelTerm.of(8)).loss(ctx(model, 14), Batch.of(z, tokens, mask));
            // a zero-initialised model predicts zero noise: latent term = E[eps^2] ~ 1
            assertEquals(1.0, r.terms().get("latent"), 0.2);
            assertEquals(r.terms().get("latent") + 8 * r.terms().get("pixel"), r.terms().get("loss"), 1e-4);
            PixelTerm half = new PixelTerm(8, PixelDecode.T, 0.5, 0, 1, 0);
            assertEquals(2, PixelTarget.rows(ctx(model, 15), half, 4).length);
        }
    }
}
