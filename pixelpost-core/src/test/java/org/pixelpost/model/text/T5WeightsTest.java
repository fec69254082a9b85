package org.pixelpost.model.text;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.TestData;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.check.InvalidValueException;
import org.pixelpost.io.tensorfile.SafeTensors;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/** T5 weights as they ship: sharded safetensors and pickled .bin shards, bf16 on disk, bf16 compute, and the shards that are not there. */
class T5WeightsTest {
    static final Path DIR = TestData.shared().resolve("oracle/t5_encoder_tiny");

    static Tensor run(T5EncoderModel m) throws Exception {
        Map<String, Tensor> in = SafeTensors.read(DIR.resolve("inputs.safetensors"));
        return m.forward(in.get("input_ids"), in.get("attention_mask")).to(ScalarType.Float);
    }

    /** The oracle's folder with its weights split into two safetensors shards and an index. */
    static Path sharded(Path out) throws Exception {
        Files.createDirectories(out);
        Files.copy(DIR.resolve("config.json"), out.resolve("config.json"));
        Map<String, Tensor> all = SafeTensors.read(DIR.resolve("model.safetensors"));
        Map<String, Tensor> a = new LinkedHashMap<>(), b = new LinkedHashMap<>();
        StringBuilder map = new StringBuilder();
        int i = 0;
        for (Map.Entry<String, Tensor> e : all.entrySet()) {
            String shard = i++ % 2 == 0 ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
            (shard.contains("00001-") ? a : b).put(e.getKey(), e.getValue());
            map.append(map.length() == 0 ? "" : ",").append('"').append(e.getKey()).append("\":\"").append(shard).append('"');
        }
        SafeTensors.write(out.resolve("model-00001-of-00002.safetensors"), a);
        SafeTensors.write(out.resolve("model-00002-of-00002.safetensors"), b);
        Files.writeString(out.resolve("model.safetensors.index.json"), "{\"metadata\": {}, \"weight_map\": {" + map + "}}");
        return out;
    }

    @Test
    void shardedAndBf16BinShardsLoadAsTheOneFile(@TempDir Path tmp) throws Exception {
        try (Scope s = Scope.open(); var g = Tensors.noGrad(); T5EncoderModel one = T5EncoderModel.load(DIR); T5EncoderModel two = T5EncoderModel.load(sharded(tmp.resolve("st")))) {
            assertEquals(one.fingerprint(), two.fingerprint(), "two safetensors shards and an index give the same weights");
            // transformers' save_pretrained in bf16 as pickled .bin shards: the oracle's weights rounded to bf16
            Path bin = TestData.fixtures().resolve("t5_tiny_bf16_bin_shards");
            try (T5EncoderModel fromBin = T5EncoderModel.load(bin)) {
                one.to(ScalarType.BFloat16);
                one.to(ScalarType.Float);
                assertEquals(one.fingerprint(), fromBin.fingerprint(), "bf16 on disk is read exactly");
                assertEquals(0, Tensors.item(run(one).sub(run(fromBin)).abs().max()), 1e-6);
            }
            try (T5EncoderModel bf16 = T5EncoderModel.load(bin, ScalarType.BFloat16)) {
                assertEquals(ScalarType.BFloat16, bf16.parameters().values().iterator().next().scalar_type().intern(), "built in bf16, not converted afterwards");
                Tensor ref = run(two), got = run(bf16);
                double rel = Tensors.item(got.sub(ref).abs().max()) / Tensors.item(ref.abs().max());
                assertTrue(rel < 0.05, "bf16 compute stays near fp32: " + rel);
            }
        }
    }

    @Test
    void aMissingShardIsNamed(@TempDir Path tmp) throws Exception {
        Path d = sharded(tmp.resolve("a"));
        Files.delete(d.resolve("model-00002-of-00002.safetensors"));
        BadFileException e = assertThrows(BadFileException.class, () -> T5EncoderModel.load(d));
        assertTrue(e.getMessage().contains("model-00002-of-00002.safetensors") && e.getMessage().contains("index.json"), e.getMessage());
        // without the index, the shard names say how many there are
        Files.delete(d.resolve("model.safetensors.index.json"));
        e = assertThrows(BadFileException.class, () -> T5EncoderModel.load(d));
        assertTrue(e.getMessage().contains("shard model-00002-of-00002.safetensors is missing"), e.getMessage());
        // an index that lists a file that is not there
        Path d2 = sharded(tmp.resolve("b"));
        Files.writeString(d2.resolve("model.safetensors.index.json"),
            Files.readString(d2.resolve("model.safetensors.index.json")).replaceFirst("model-00001-of-00002", "model-00001-of-00003"));
        e = assertThrows(BadFileException.class, () -> T5EncoderModel.load(d2));
        assertTrue(e.getMessage().contains("model-00001-of-00003.safetensors"), e.getMessage());
        // an index whose shard lacks a weight it places there
        Path d3 = sharded(tmp.resolve("c"));
        String idx = Files.readString(d3.resolve("model.safetensors.index.json"));
        Files.writeString(d3.resolve("model.safetensors.index.json"), idx.replace("\"shared.weight\":\"model-00001-of-00002.safetensors\"",
            "\"shared.weight\":\"model-00002-of-00002.safetensors\""));
        e = assertThrows(BadFileException.class, () -> T5EncoderModel.load(d3));
        assertTrue(e.getMessage().contains("lacks weight shared.weight"), e.getMessage());
        // none of it wrote anything into the folders
        assertEquals(List.of("config.json", "model-00001-of-00002.safetensors"), Files.list(d).map(p -> p.getFileName().toString()).sorted().toList());
    }

    @Test
    void fp16IsRefusedAndTheMemoryIsSaid() {
        InvalidValueException e = assertThrows(InvalidValueException.class, () -> T5TextEncoder.dtype("fp16"));
        assertTrue(e.getMessage().contains("--text-encoder-dtype") && e.getMessage().contains("overflow"), e.getMessage());
        assertEquals(ScalarType.BFloat16, T5TextEncoder.dtype("bf16"));
        assertEquals(19_049_242_624L, T5TextEncoder.weightBytes(T5EncoderModel.Config.v11Xxl(), ScalarType.Float));
        assertEquals(9_524_621_312L, T5TextEncoder.weightBytes(T5EncoderModel.Config.v11Xxl(), ScalarType.BFloat16));
    }

    @Test
    void theEncoderGivesPixArtsMaskedHundredAndTwentyTokens() throws Exception {
        try (T5TextEncoder te = new T5TextEncoder(T5Tokenizer.of(TestData.shared().resolve("oracle/t5_tokenizer/test_sentencepiece.model"), true, 100),
                T5EncoderModel.load(DIR), T5Tokenizer.PIXART_MAX_LENGTH); Scope s = Scope.open()) {
            org.pixelpost.model.Conditioning c = te.encode(List.of("a photo of an astronaut riding a horse on mars", ""));
            assertArrayEquals(new long[] {2, 120, 32}, Tensors.shape(c.tokens()));
            float[] mask = Tensors.toFloats(c.mask().to(ScalarType.Float));
            int real0 = 0, real1 = 0;
            for (int j = 0; j < 120; j++) {
                real0 += (int) mask[j];
                real1 += (int) mask[120 + j];
            }
            assertEquals(24, real0, "the prompt's 23 pieces and </s>");
            assertEquals(1, real1, "the empty prompt is </s> alone");
        }
    }
}
