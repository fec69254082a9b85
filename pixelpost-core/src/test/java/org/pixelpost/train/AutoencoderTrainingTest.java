package org.pixelpost.train;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.TestData;
import org.pixelpost.io.Images;
import org.pixelpost.io.check.InvalidValueException;
import org.pixelpost.io.tensorfile.SafeTensors;
import org.pixelpost.model.autoencoder.AutoencoderKL;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

class AutoencoderTrainingTest {
    static final AutoencoderTraining.Listener QUIET = new AutoencoderTraining.Listener() {
        @Override public void step(long step, long total, Map<String, Double> terms) {}
        @Override public void message(String text) {}
    };

    /** 4 latent channels at f8 on 32x32 emoji: the demo's latent shape, narrow enough for a test. */
    static final AutoencoderKL.Config TINY = new AutoencoderKL.Config(3, 3, List.of(8, 16, 16, 16), 1, 4, 4, 1.0, 0.0, true);

    @TempDir static Path shared;
    static Path train, val;

    @BeforeAll
    static void data() throws Exception {
        Engine.start();
        train = TestData.captionedFolder(shared.resolve("train"), TestData.EMOJI, TestData.CAPTIONS);
        val = Files.createDirectories(shared.resolve("val"));
        TestData.emojiPngs(val, TestData.EMOJI_VAL);
    }

    static AutoencoderTraining.Config config(Path out, int steps, int every, String resume) {
        return new AutoencoderTraining.Config(train, val, out, TINY, 32, steps, 4, 2e-3, 5, "l1", 1.0, 1e-6, 1.0, 7, every, 2, 1, resume);
    }

    @Test
    void trainingLowersTheReconstructionErrorAndSetsAUnitVarianceScale(@TempDir Path dir) throws Exception {
        AutoencoderTraining.Summary s = new AutoencoderTraining(config(dir.resolve("run"), 80, 40, null), QUIET).run();
        List<JsonNode> log = new ArrayList<>();
        for (String l : Files.readAllLines(dir.resolve("run/metrics.jsonl"))) log.add(new ObjectMapper().readTree(l));
        assertEquals(80, log.size());
        double first = log.subList(0, 10).stream().mapToDouble(j -> j.get("rec").asDouble()).average().orElseThrow();
        double last = log.subList(70, 80).stream().mapToDouble(j -> j.get("rec").asDouble()).average().orElseThrow();
        assertTrue(last < 0.8 * first, "reconstruction L1 fell: " + first + " -> " + last);

        // the held-out PSNR, measured here independently of the trainer, rose from the untrained model's
        Tensor heldOut = load(val);
        double before;
        try (Scope sc = Scope.open()) {
            Engine.seed(7);
            try (AutoencoderKL init = new AutoencoderKL(TINY)) {
                before = psnr(init, heldOut);
            }
        }
        try (AutoencoderKL ae = AutoencoderKL.load(s.model())) {
            double after = psnr(ae, heldOut);
            assertEquals(s.valPsnr(), after, 1e-3, "the summary's held-out PSNR is the folder's");
            assertTrue(after > before + 2, "held-out PSNR " + before + " -> " + after + " dB");

            // scaling_factor makes the encoded training latents unit-variance, as SD's 0.18215 does
            assertEquals(1 / s.latentStd(), ae.scalingFactor(), 1e-9);
            try (Scope sc = Scope.open(); var g = Tensors.noGrad()) {
                Tensor x = load(train).to(torch.ScalarType.Float).div(Tensors.s(255));
                assertEquals(1.0, Tensors.item(ae.encode(x).std()), 1e-4);
                assertNotEquals(1.0, Tensors.item(ae.rawPosterior(x).mean().std()), 1e-2, "the raw latents are not unit-variance by themselves");
            }
            // the saved folder is diffusers' AutoencoderKL layout and holds the final checkpoint's weights bit for bit
            JsonNode cfg = new ObjectMapper().readTree(s.model().resolve("config.json").toFile());
            assertEquals("AutoencoderKL", cfg.get("_class_name").asText());
            assertEquals(4, cfg.get("latent_channels").asInt());
            assertEquals(4, cfg.get("block_out_channels").size());
            try (Scope sc = Scope.open()) {
                Map<String, Tensor> ck = SafeTensors.read(dir.resolve("run/checkpoints/step-000080/model.safetensors"));
                Map<String, Tensor> saved = ae.stateDict();
                assertEquals(ck.keySet(), saved.keySet());
                for (String k : ck.keySet()) assertTrue(torch.equal(ck.get(k), saved.get(k)), k);
            }
        }
        assertNotNull(javax.imageio.ImageIO.read(dir.resolve("run/reconstructions.png").toFile()));
    }

    @Test
    void aResumedRunIsTheUninterruptedRunBitForBit(@TempDir Path dir) throws Exception {
        Path whole = dir.resolve("whole"), parted = dir.resolve("parted");
        new AutoencoderTraining(config(whole, 6, 3, null), QUIET).run();
        new AutoencoderTraining(config(parted, 3, 3, null), QUIET).run();
        // the first part ran 3 of 6 steps: same checkpoint, then resumed with the full budget
        try (Scope sc = Scope.open()) {
            Map<String, Tensor> a = SafeTensors.read(whole.resolve("checkpoints/step-000003/model.safetensors"));
            Map<String, Tensor> b = SafeTensors.read(parted.resolve("checkpoints/step-000003/model.safetensors"));
            for (String k : a.keySet()) assertTrue(torch.equal(a.get(k), b.get(k)), k);
        }
        org.pixelpost.io.AtomicFiles.deleteTree(parted.resolve("model"));
        IOException refused = assertThrows(IOException.class, () -> new AutoencoderTraining(config(parted, 6, 3, null), QUIET).run());
        assertTrue(refused.getMessage().contains("--resume latest"), refused.getMessage());
        new AutoencoderTraining(config(parted, 6, 3, "latest"), QUIET).run();
        try (AutoencoderKL a = AutoencoderKL.load(whole.resolve("model")); AutoencoderKL b = AutoencoderKL.load(parted.resolve("model"))) {
            Map<String, Tensor> x = a.stateDict(), y = b.stateDict();
            for (String k : x.keySet()) assertTrue(torch.equal(x.get(k), y.get(k)), k);
            assertEquals(a.scalingFactor(), b.scalingFactor());
        }
        assertEquals(Files.readAllLines(whole.resolve("metrics.jsonl")).stream().map(l -> l.replaceAll(",\"val_psnr\":[^,}]*", "")).toList(),
            Files.readAllLines(parted.resolve("metrics.jsonl")).stream().map(l -> l.replaceAll(",\"val_psnr\":[^,}]*", "")).toList(),
            "the log continues where the checkpoint is");
    }

    @Test
    void badSettingsAreRefusedByName(@TempDir Path dir) throws Exception {
        InvalidValueException e = assertThrows(InvalidValueException.class, () ->
            new AutoencoderTraining.Config(train, null, dir, TINY, 32, 10, 4, 1e-3, 0, "l3", 1, 1e-6, 1, 0, 0, 1, 1, null));
        assertEquals("loss", e.key());
        e = assertThrows(InvalidValueException.class, () ->
            new AutoencoderTraining.Config(train, null, dir, TINY, 36, 10, 4, 1e-3, 0, "l1", 1, 1e-6, 1, 0, 0, 1, 1, null));
        assertEquals("image_size", e.key());
        AutoencoderKL.Config odd = new AutoencoderKL.Config(3, 3, List.of(8, 12), 1, 4, 8, 1.0, 0.0, true);
        e = assertThrows(InvalidValueException.class, () ->
            new AutoencoderTraining.Config(train, null, dir, odd, 32, 10, 4, 1e-3, 0, "l1", 1, 1e-6, 1, 0, 0, 1, 1, null));
        assertEquals("block_out_channels", e.key());
        Path empty = Files.createDirectories(dir.resolve("empty"));
        IOException io = assertThrows(IOException.class, () -> new AutoencoderTraining(
            new AutoencoderTraining.Config(empty, null, dir.resolve("run"), TINY, 32, 2, 2, 1e-3, 0, "l1", 1, 1e-6, 1, 0, 0, 1, 1, null), QUIET).run());
        assertTrue(io.getMessage().contains(empty.toString()) && io.getMessage().contains("no PNG or JPEG"), io.getMessage());
        assertFalse(Files.exists(dir.resolve("run/model")), "nothing written for a refused run");
    }

    static Tensor load(Path dir) throws IOException {
        List<Tensor> xs = new ArrayList<>();
        try (var files = Files.list(dir)) {
            for (Path f : files.filter(p -> p.toString().endsWith(".png")).sorted().toList())
                xs.add(Images.load(f, 32).mul(Tensors.s(255)).round().to(torch.ScalarType.Byte));
        }
        Tensor t = torch.stack(new TensorVector(xs.toArray(new Tensor[0])));
        t.retainReference();
        return t;
    }

    /** Mean PSNR of the clamped round trip through the posterior mean, from the model's public encode and decode. */
    static double psnr(AutoencoderKL ae, Tensor images) {
        try (Scope sc = Scope.open(); var g = Tensors.noGrad()) {
            Tensor x = images.to(torch.ScalarType.Float).div(Tensors.s(255));
            Tensor y = Tensors.clamp(ae.decode(ae.encode(x)), 0, 1);
            double sum = 0;
            for (long i = 0; i < x.size(0); i++) {
                double mse = Tensors.item(x.select(0, i).sub(y.select(0, i)).square().mean());
                sum += 10 * Math.log10(1 / mse);
            }
            return sum / x.size(0);
        }
    }
}
