package org.pixelpost.objective;

import static org.junit.jupiter.api.Assertions.*;

import java.util.function.UnaryOperator;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.Test;
import org.pixelpost.TestData;
import org.pixelpost.schedule.NoiseSchedule;
import org.pixelpost.model.autoencoder.TinyAutoencoder;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/** Each objective against values worked out by hand on small fixed tensors. */
class ObjectivesTest {
    static Tensor t(float[] v, long... shape) {
        return Tensors.fromFloats(v, shape);
    }

    @Test
    void latentTermIsThePerSampleMeanSquaredError() {
        Tensor out = t(new float[] {1, 2, 3, 4, 0, 0, 0, 2}, 2, 1, 2, 2), target = torch.zeros(2, 1, 2, 2);
        // (1 + 4 + 9 + 16) / 4 = 7.5 and (0 + 0 + 0 + 4) / 4 = 1
        assertArrayEquals(new float[] {7.5f, 1f}, Tensors.toFloats(Objectives.latent(out, target)));
    }

    @Test
    void pixelTermComparesDecodedImagesInMinusOneToOne() {
        // decoder x -> 0.5 x + 0.25 on [1,1,1,2] "latents"; target image 0.25 everywhere
        UnaryOperator<Tensor> decode = z -> z.mul(Tensors.s(0.5)).add(Tensors.s(0.25));
        Tensor pred = t(new float[] {1, -1, 2, 0}, 2, 1, 1, 2);
        Tensor target = torch.full(new long[] {2, 1, 1, 2}, new org.bytedeco.pytorch.Scalar(0.25));
        // decoded - target = 0.5 pred; in [-1, 1] that doubles to pred: per sample mean(pred^2) = 1 and 2
        assertArrayEquals(new float[] {1f, 2f}, Tensors.toFloats(Objectives.pixel(decode, target, pred, 0)), 1e-6f);
        assertArrayEquals(new float[] {1f, 2f}, Tensors.toFloats(Objectives.pixel(decode, target, pred, 1)), 1e-6f);
    }

    @Test
    void predictedAndTargetLatentsOfBothDecodings() {
        NoiseSchedule s = NoiseSchedule.sd();
        Tensor z = t(new float[] {1, 2}, 1, 2, 1, 1), eps = t(new float[] {0.5f, -1}, 1, 2, 1, 1), epsHat = t(new float[] {0, 1}, 1, 2, 1, 1);
        Tensor tt = t(new float[] {300}, 1).to(ScalarType.Long);
        double a = s.alphaBar(300);
        Tensor zT = s.addNoise(z, eps, tt);
        float[] predT = Tensors.toFloats(Objectives.predictedLatent(PixelDecode.T, s, z, zT, epsHat, tt));
        assertEquals(Math.sqrt(a) * 1 + Math.sqrt(1 - a) * 0, predT[0], 1e-6);
        assertEquals(Math.sqrt(a) * 2 + Math.sqrt(1 - a) * 1, predT[1], 1e-6);
        float[] predX0 = Tensors.toFloats(Objectives.predictedLatent(PixelDecode.X0, s, z, zT, epsHat, tt));
        // (z_t - sqrt(1-a) epsHat) / sqrt(a) = z + sqrt((1-a)/a) (eps - epsHat)
        assertEquals(1 + Math.sqrt((1 - a) / a) * 0.5, predX0[0], 1e-5);
        assertEquals(2 + Math.sqrt((1 - a) / a) * -2, predX0[1], 1e-5);
        assertSame(zT, Objectives.targetLatent(PixelDecode.T, z, zT));
        assertSame(z, Objectives.targetLatent(PixelDecode.X0, z, zT));
    }

    @Test
    void sftWeightsTheTerms() {
        Tensor latent = t(new float[] {1, 3}, 2), pixel = t(new float[] {2, 4}, 2);
        assertEquals(2 + 8 * 3, Tensors.item(Objectives.sft(latent, pixel, 1, 8)), 1e-6);   // latent + lambda pixel
        assertEquals(2, Tensors.item(Objectives.sft(latent, null, 1, 8)), 1e-6);            // latent only
        assertEquals(3, Tensors.item(Objectives.sft(null, pixel, 0, 1)), 1e-6);             // pixel only
        assertThrows(IllegalArgumentException.class, () -> Objectives.sft(latent, pixel, 0, 0));
    }

    @Test
    void dpoAndSimpoByHand() {
        Tensor mw = t(new float[] {0.2f}, 1), ml = t(new float[] {0.5f}, 1), rw = t(new float[] {0.3f}, 1), rl = t(new float[] {0.4f}, 1);
        // -10 ((0.2 - 0.3) - (0.5 - 0.4)) = 2, loss = -log sigma(2) = log(1 + e^-2)
        Tensor m = Objectives.dpoMargin(mw, ml, rw, rl, 10);
        assertEquals(2.0, Tensors.item(m), 1e-6);
        assertEquals(Math.log1p(Math.exp(-2)), Tensors.item(Objectives.preference(m)), 1e-6);
        // SimPO: -10 (0.2 - 0.5) - 0.5 = 2.5
        Tensor sm = Objectives.simpoMargin(mw, ml, 10, 0.5);
        assertEquals(2.5, Tensors.item(sm), 1e-6);
        assertEquals(Math.log1p(Math.exp(-2.5)), Tensors.item(Objectives.preference(sm)), 1e-6);
        // the sign: a lower winner error gives a lower loss
        double better = Tensors.item(Objectives.preference(Objectives.simpoMargin(t(new float[] {0.1f}, 1), t(new float[] {0.5f}, 1), 5, 0)));
        double worse = Tensors.item(Objectives.preference(Objectives.simpoMargin(t(new float[] {0.5f}, 1), t(new float[] {0.1f}, 1), 5, 0)));
        assertTrue(better < Math.log(2) && Math.log(2) < worse, better + " " + worse);
        // equal errors give ln 2 whatever beta
        assertEquals(Math.log(2), Tensors.item(Objectives.preference(Objectives.dpoMargin(mw, ml, mw, ml, 1e4))), 1e-7);
        assertEquals(1.0, Objectives.accuracy(m));
        // Eq. 7: L_latent + mu L_pixel
        assertEquals(0.5 + 8 * 0.25, Tensors.item(Objectives.combined(t(new float[] {0.5f}, 1), t(new float[] {0.25f}, 1), 1, 8)), 1e-6);
    }

    @Test
    void pixelGradientMatchesFiniteDifferencesThroughARealDecoder() throws Exception {
        Engine.seed(9);
        TinyAutoencoder ae = TinyAutoencoder.load("taef2", TestData.taef2().resolve("taef2_encoder.safetensors"), TestData.taef2().resolve("taef2_decoder.safetensors"));
        ae.decoder().to(ScalarType.Double);
        UnaryOperator<Tensor> decode = ae::decode;
        try (Scope s = Scope.open()) {
            Tensor target;
            try (var g = Tensors.noGrad()) {
                target = decode.apply(torch.randn(3, 32, 2, 2).to(ScalarType.Double));
            }
            Tensor x = torch.randn(3, 32, 2, 2).to(ScalarType.Double);
            Tensor w = Tensors.fromFloats(new float[] {0.2f, 1.5f, -0.7f}, 3).to(ScalarType.Double);
            Tensor[] grads = new Tensor[2];
            double[] values = new double[2];
            int[] chunks = {0, 1};
            for (int k = 0; k < 2; k++) {
                Tensor xg = x.clone().set_requires_grad(true);
                Tensor p = Objectives.pixel(decode, target, xg, chunks[k]);
                Tensor loss = p.mul(w).sum();
                values[k] = Tensors.item(loss);
                loss.backward();
                grads[k] = xg.grad();
            }
            assertEquals(values[0], values[1], 1e-10, "chunked and whole-batch decoding give the same value");
            assertTrue(Tensors.item(grads[0].sub(grads[1]).abs().max()) < 1e-10, "and the same gradient");
            try (var g = Tensors.noGrad()) {
                for (int k = 0; k < 3; k++) {
                    Tensor dir = torch.randn_like(x);
                    double h = 1e-6;
                    double plus = Tensors.item(Objectives.pixel(decode, target, x.add(dir.mul(Tensors.s(h))), 0).mul(w).sum());
                    double minus = Tensors.item(Objectives.pixel(decode, target, x.sub(dir.mul(Tensors.s(h))), 0).mul(w).sum());
                    double numeric = (plus - minus) / (2 * h), analytic = Tensors.item(grads[1].mul(dir).sum());
                    assertEquals(numeric, analytic, 1e-6 * Math.max(1, Math.abs(numeric)));
                }
            }
        }
    }
}
