package org.pixelpost.model.autoencoder;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Path;
import java.util.List;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.TestData;
import org.pixelpost.io.Images;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

class TinyAutoencoderTest {
    static Autoencoder fromPth, fromSafetensors;

    @BeforeAll
    static void load() throws Exception {
        Engine.seed(0);
        Path w = TestData.taef2();
        fromPth = TinyAutoencoder.load("taef2", w.resolve("taef2_encoder.pth"), w.resolve("taef2_decoder.pth"));
        fromSafetensors = TinyAutoencoder.load("taef2", w.resolve("taef2_encoder.safetensors"), w.resolve("taef2_decoder.safetensors"));
    }

    @Test
    void variantIsReadOffTheWeights() {
        assertEquals(32, fromPth.latentChannels());
        assertEquals(8, fromPth.downsampling());
        assertEquals(1_338_528, fromPth.encoder().parameterCount());
        assertEquals(1_338_499, fromPth.decoder().parameterCount());
        assertEquals(Autoencoder.PixelRange.ZERO_ONE, fromPth.nativeRange());
    }

    @Test
    void roundTripOfRealEmojiIsWithinTheMeasuredRange(@TempDir Path dir) throws Exception {
        List<Path> files = TestData.emojiPngs(dir);
        double sum = 0;
        try (Scope s = Scope.open(); var g = Tensors.noGrad()) {
            for (Path f : files) {
                Tensor x = Images.load(f, 64).unsqueeze(0);
                Tensor z = fromPth.encode(x);
                assertArrayEquals(new long[] {1, 32, 8, 8}, Tensors.shape(z));
                Tensor y = Tensors.clamp(fromPth.decode(z), 0, 1);
                double psnr = Images.psnr(x, y);
                // an independent implementation measured 24-32 dB on such images
                assertTrue(psnr >= 24 && psnr <= 32, f.getFileName() + ": " + psnr + " dB");
                Tensor y2 = Tensors.clamp(fromSafetensors.decode(fromSafetensors.encode(x)), 0, 1);
                assertTrue(torch.equal(y, y2), "pth and safetensors weights decode identically");
                sum += psnr;
            }
        }
        double mean = sum / files.size();
        assertTrue(mean > 26 && mean < 31, "mean " + mean);
    }

    @Test
    void frozenDecoderPassesGradientsToItsInputOnly() {
        Autoencoder ae = fromPth;
        TinyAutoencoder d = (TinyAutoencoder) ae;
        Engine.seed(3);
        // Double precision so central differences are exact enough to compare to 1e-6.
        d.decoder().to(ScalarType.Double);
        try (Scope s = Scope.open()) {
            Tensor z = torch.randn(1, 32, 2, 2).to(ScalarType.Double).mul(Tensors.s(0.7));
            Tensor r = torch.randn(1, 3, 16, 16).to(ScalarType.Double);
            Tensor zg = z.clone().set_requires_grad(true);
            Tensor loss = ae.decode(zg).mul(r).sum();
            loss.backward();
            Tensor grad = zg.grad();
            for (Tensor p : ae.decoder().parameters().values()) {
                assertFalse(p.requires_grad());
                assertFalse(p.grad().defined(), "a frozen parameter gathers no gradient");
            }
            float[] analytic = Tensors.toFloats(grad);
            double h = 1e-5;
            try (var g = Tensors.noGrad()) {
                for (int i = 0; i < analytic.length; i += 9) {
                    Tensor e = torch.zeros(128).to(ScalarType.Double);
                    e.narrow(0, i, 1).fill_(Tensors.s(h));
                    e = e.view(1, 32, 2, 2);
                    double plus = Tensors.item(ae.decode(z.add(e)).mul(r).sum());
                    double minus = Tensors.item(ae.decode(z.sub(e)).mul(r).sum());
                    double numeric = (plus - minus) / (2 * h);
                    assertEquals(numeric, analytic[i], 1e-4 * Math.max(1, Math.abs(numeric)), "d loss / d z[" + i + "]");
                }
            }
        } finally {
            d.decoder().to(ScalarType.Float);
        }
    }
}
