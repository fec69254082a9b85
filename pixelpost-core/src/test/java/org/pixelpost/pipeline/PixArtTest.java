package org.pixelpost.pipeline;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.InMemory;
import org.pixelpost.TestData;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.tensorfile.Checkpoints;
import org.pixelpost.io.tensorfile.SafeTensors;
import org.pixelpost.model.Conditioning;
import org.pixelpost.model.denoiser.DiT;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * PixArt-alpha's transformer as users have it: the 1024-MS model's size conditions against
 * diffusers, the original checkpoint (a .pth torch.save wrote) against the diffusers folder, both
 * layouts written and read back, and the files that are not what they claim refused by name.
 */
class PixArtTest {
    static final Path ORACLE = TestData.shared().resolve("oracle/pixart_tiny");

    static double maxAbsDiff(Tensor a, Tensor b) {
        return Tensors.item(a.sub(b.to(a.scalar_type())).abs().max());
    }

    /** The oracle's call: masked text, two timesteps. */
    static Tensor oracleSample(DiT m) throws Exception {
        Map<String, Tensor> in = SafeTensors.read(ORACLE.resolve("inputs.safetensors"));
        Conditioning c = Conditioning.of(in.get("encoder_hidden_states"), in.get("encoder_attention_mask").to(org.bytedeco.pytorch.global.torch.ScalarType.Bool));
        return m.forwardWithVariance(in.get("hidden_states"), in.get("timestep"), c);
    }

    @Test
    void the1024ModelsSizeConditionsMatchDiffusers() throws Exception {
        Path dir = TestData.fixtures().resolve("pixart_ms_tiny");
        try (DiT m = (DiT) org.pixelpost.model.denoiser.Denoisers.load(dir, null); Scope s = Scope.open(); var g = Tensors.noGrad()) {
            assertTrue(m.config().useAdditionalConditions());
            assertEquals(2.0, m.config().interpolationScale());
            assertEquals(119_152, m.module().parameterCount(), "the count diffusers gives");
            Map<String, Tensor> in = SafeTensors.read(dir.resolve("inputs.safetensors")), out = SafeTensors.read(dir.resolve("outputs.safetensors"));
            Conditioning c = Conditioning.of(in.get("encoder_hidden_states"), in.get("encoder_attention_mask").to(org.bytedeco.pytorch.global.torch.ScalarType.Bool))
                .withExtra(DiT.RESOLUTION, in.get("resolution")).withExtra(DiT.ASPECT_RATIO, in.get("aspect_ratio"));
            Tensor y = m.forwardWithVariance(in.get("hidden_states"), in.get("timestep"), c);          // an 8x12 latent: 4x6 patches
            assertTrue(maxAbsDiff(y, out.get("sample")) < 1e-4, "1024-MS style: " + maxAbsDiff(y, out.get("sample")));
            // without explicit conditions the model takes the latent's own size (x8 pixels): row 0 was given exactly that
            Tensor own = m.forwardWithVariance(in.get("hidden_states").narrow(0, 0, 1), in.get("timestep").narrow(0, 0, 1),
                Conditioning.of(in.get("encoder_hidden_states").narrow(0, 0, 1), in.get("encoder_attention_mask").narrow(0, 0, 1).to(org.bytedeco.pytorch.global.torch.ScalarType.Bool)));
            assertTrue(maxAbsDiff(own, out.get("sample").narrow(0, 0, 1)) < 1e-4);
            // the conditions matter: another resolution gives another output
            Tensor other = m.forwardWithVariance(in.get("hidden_states"), in.get("timestep"), c.withExtra(DiT.RESOLUTION, in.get("resolution").mul(Tensors.s(2))));
            assertTrue(maxAbsDiff(other, y) > 1e-3);
        }
    }

    @Test
    void theOriginalPthMatchesDiffusersOutputs() throws Exception {
        Path pth = TestData.fixtures().resolve("pixart_tiny_original.pth");
        try (Scope s = Scope.open(); var g = Tensors.noGrad()) {
            Map<String, Tensor> all = Checkpoints.read(pth);
            assertTrue(all.containsKey("pos_embed") && all.containsKey("y_embedder.y_embedding"), "a state_dict as PixArt saves it");
            // hidden 48 is no published width: the head count comes from the transformer config beside it
            Path parts = Files.createTempDirectory("pixart-parts");
            TestData.copyTree(ORACLE, parts.resolve("transformer"));
            DiT.Config c = PixArt.originalConfig(pth, all, parts);
            assertEquals(DiT.pixArtConfig(new ObjectMapper().readTree(ORACLE.resolve("config.json").toFile())), c);
            assertEquals(c, DiT.originalConfig(ShapeDetection.shapesOf(all), pth, 4), "the same from the shapes and a head count");
            try (DiT m = DiT.fromOriginal(c, all, pth); DiT folder = (DiT) org.pixelpost.model.denoiser.Denoisers.load(ORACLE, null)) {
                assertEquals(110_384, m.module().parameterCount(), "positions and the learned empty caption are no parameters");
                Tensor expected = SafeTensors.read(ORACLE.resolve("outputs.safetensors")).get("sample");
                assertTrue(maxAbsDiff(oracleSample(m), expected) < 1e-4);
                assertTrue(maxAbsDiff(oracleSample(folder), expected) < 1e-4);
            }
            org.pixelpost.io.AtomicFiles.deleteTree(parts);
        }
    }

    @Test
    void bothLayoutsAreWrittenAndReadBack(@TempDir Path tmp) throws Exception {
        Path dir = TestData.fixtures().resolve("pixart_ms_tiny");
        try (DiT m = (DiT) org.pixelpost.model.denoiser.Denoisers.load(dir, null); Scope s = Scope.open(); var g = Tensors.noGrad()) {
            // diffusers' folder, key for key what diffusers wrote
            m.savePixArt(tmp.resolve("transformer"));
            assertEquals(SafeTensors.open(dir.resolve("diffusion_pytorch_model.safetensors")).entries().keySet(),
                SafeTensors.open(tmp.resolve("transformer/diffusion_pytorch_model.safetensors")).entries().keySet());
            try (DiT back = (DiT) org.pixelpost.model.denoiser.Denoisers.load(tmp.resolve("transformer"), null)) {
                assertEquals(m.config(), back.config());
                assertEquals(m.module().fingerprint(), back.module().fingerprint());
            }
            // the original layout: the configuration comes back from the shapes and the header's head count
            Path orig = tmp.resolve("ms.safetensors");
            SafeTensors.write(orig, m.originalState(), Map.of("format", "pt", "num_heads", "4"));
            Map<String, Tensor> all = Checkpoints.read(orig);
            DiT.Config c = PixArt.originalConfig(orig, all, null);
            assertEquals(m.config(), c);
            try (DiT back = DiT.fromOriginal(c, all, orig)) {
                assertEquals(m.module().fingerprint(), back.module().fingerprint());
            }
        }
    }

    @Test
    void a1024FileUnderA512ConfigAndTheReverseAreRefused(@TempDir Path tmp) throws Exception {
        Path ms = TestData.fixtures().resolve("pixart_ms_tiny");
        try (DiT m = (DiT) org.pixelpost.model.denoiser.Denoisers.load(ms, null); Scope s = Scope.open(); var g = Tensors.noGrad()) {
            Path orig = tmp.resolve("ms.safetensors");
            SafeTensors.write(orig, m.originalState(), Map.of("num_heads", "4"));
            Map<String, Tensor> all = Checkpoints.read(orig);
            BadFileException e = assertThrows(BadFileException.class, () -> DiT.fromOriginal(m.config().withAdditionalConditions(false), all, orig));
            assertTrue(e.getMessage().contains("1024-MS checkpoint") && e.getMessage().contains("512"), e.getMessage());
            Map<String, Tensor> pth = Checkpoints.read(TestData.fixtures().resolve("pixart_tiny_original.pth"));
            DiT.Config c512 = DiT.originalConfig(ShapeDetection.shapesOf(pth), orig, 4);
            e = assertThrows(BadFileException.class, () -> DiT.fromOriginal(c512.withAdditionalConditions(true), pth, orig));
            assertTrue(e.getMessage().contains("a 512 checkpoint"), e.getMessage());
        }
        // the same for diffusers folders: the config's use_additional_conditions against the weights
        for (boolean flip : new boolean[] {true, false}) {
            Path src = flip ? ms : ORACLE, copy = tmp.resolve("folder-" + flip);
            TestData.copyTree(src, copy);
            ObjectNode cfg = (ObjectNode) new ObjectMapper().readTree(copy.resolve("config.json").toFile());
            cfg.put("use_additional_conditions", !flip);
            Files.writeString(copy.resolve("config.json"), cfg.toString());
            BadFileException e = assertThrows(BadFileException.class, () -> org.pixelpost.model.denoiser.Denoisers.load(copy, null));
            assertTrue(e.getMessage().contains("use_additional_conditions"), e.getMessage());
        }
    }

    @Test
    void aCheckpointOfAnotherModelIsRefusedByName(@TempDir Path tmp) throws Exception {
        try (Scope s = Scope.open(); Generator g = Generator.seeded(1)) {
            // a class-conditional DiT (ImageNet labels): DiT keys, but no caption projection or adaLN-single
            Map<String, Tensor> dit = new LinkedHashMap<>();
            dit.put("x_embedder.proj.weight", g.randn(48, 4, 2, 2));
            dit.put("t_embedder.mlp.0.weight", g.randn(48, 256));
            dit.put("y_embedder.embedding_table.weight", g.randn(1001, 48));
            dit.put("blocks.0.adaLN_modulation.1.weight", g.randn(288, 48));
            Path f = tmp.resolve("DiT-XL-2-256x256.safetensors");
            SafeTensors.write(f, dit);
            BadFileException e = assertThrows(BadFileException.class, () -> TextToImageModel.load(f));
            assertTrue(e.getMessage().contains("not a single file of any model family"), e.getMessage());
            e = assertThrows(BadFileException.class, () -> DiT.originalConfig(ShapeDetection.shapesOf(dit), f, null));
            assertTrue(e.getMessage().contains("class-conditional DiT"), e.getMessage());
            // a PixArt file alone: its other components are asked for
            e = assertThrows(BadFileException.class, () -> TextToImageModel.load(TestData.fixtures().resolve("pixart_tiny_original.pth")));
            assertTrue(e.getMessage().contains("--configs"), e.getMessage());
        }
    }

    @Test
    void theAspectRatioBinsAreDiffusers() {
        assertArrayEquals(new int[] {1024, 1024}, PixArt.nearestBin(1000, 1000, 1024));
        assertArrayEquals(new int[] {768, 1344}, PixArt.nearestBin(720, 1280, 1024), "16:9 (0.5625) is nearest 0.57");
        assertArrayEquals(new int[] {2048, 512}, PixArt.nearestBin(4000, 500, 1024), "beyond the last bin: the last");
        assertArrayEquals(new int[] {384, 672}, PixArt.nearestBin(720, 1280, 512), "the 512 bins are the 1024 ones halved");
        assertArrayEquals(new int[] {20, 30}, PixArt.nearestBin(20, 30, 16), "no bins at other sizes");
        assertEquals(PixArt.BINS_1024.length, PixArt.BIN_RATIOS.length);
        for (int i = 0; i < PixArt.BINS_1024.length; i++)
            assertEquals(PixArt.BIN_RATIOS[i], (double) PixArt.BINS_1024[i][0] / PixArt.BINS_1024[i][1], 0.03, "bin " + i + " is named by its ratio");
    }

    @Test
    void binnedImagesAreResizedAndCroppedToTheSizeAskedFor() {
        try (Scope s = Scope.open(); Generator g = Generator.seeded(0)) {
            // 704 * (960 / 704.0) rounds down to 959 in floating point: the resize must still cover 960
            assertArrayEquals(new long[] {1, 3, 960, 1920}, Tensors.shape(Sampler.resizeAndCrop(g.rand(1, 3, 704, 1408), 960, 1920)));
            assertArrayEquals(new long[] {2, 3, 30, 20}, Tensors.shape(Sampler.resizeAndCrop(g.rand(2, 3, 16, 16), 30, 20)));
        }
    }

    @Test
    void theTinyPipelineSavesLoadsAndSamplesSquareAndNot(@TempDir Path tmp) throws Exception {
        Path dir = tmp.resolve("pixart");
        Tensor a, wide;
        try (TextToImageModel m = InMemory.tinyPixArt()) {
            assertEquals("PixArt-alpha", m.family().displayName());
            assertEquals(4.5, m.family().defaultGuidance());
            a = m.sampler().sample(List.of("a red circle"), new long[] {3}, new Sampler.Settings(3, 4.5, 0), null);
            m.save(dir);
        }
        assertEquals("PixArtAlphaPipeline", new ObjectMapper().readTree(dir.resolve("model_index.json").toFile()).get("_class_name").asText());
        for (String f : List.of("transformer/config.json", "transformer/diffusion_pytorch_model.safetensors", "text_encoder/config.json",
            "text_encoder/model.safetensors", "tokenizer/spiece.model", "tokenizer/tokenizer_config.json", "vae/config.json", "scheduler/scheduler_config.json"))
            assertTrue(Files.isRegularFile(dir.resolve(f)), f);
        try (TextToImageModel m = TextToImageModel.load(dir)) {
            Tensor b = m.sampler().sample(List.of("a red circle"), new long[] {3}, new Sampler.Settings(3, 4.5, 0), null);
            assertEquals(0, maxAbsDiff(a, b), 1e-5, "the folder samples what the model in memory did");
            wide = m.sampler().sample(List.of("a red circle"), new long[] {3}, new Sampler.Settings(3, 4.5, 0, 16, 24, 1), null);
            assertArrayEquals(new long[] {1, 3, 16, 24}, Tensors.shape(wide));
            assertTrue(Tensors.item(wide.std()) > 0.01, "a picture, not a constant");
        }
    }
}
