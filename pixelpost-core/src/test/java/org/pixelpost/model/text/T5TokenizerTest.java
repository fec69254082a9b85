package org.pixelpost.model.text;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.TestData;
import org.pixelpost.io.check.BadFileException;

/** T5's tokenizer against transformers' slow T5Tokenizer (../shared/oracle/t5_tokenizer), legacy and not. */
class T5TokenizerTest {
    static final Path DIR = TestData.shared().resolve("oracle/t5_tokenizer");

    static int[] ints(JsonNode a) {
        int[] out = new int[a.size()];
        for (int i = 0; i < out.length; i++) out[i] = a.get(i).asInt();
        return out;
    }

    @Test
    void matchesTransformersOnEveryPromptInBothModes() throws Exception {
        JsonNode all = new ObjectMapper().readTree(DIR.resolve("t5_tokenizer_cases.json").toFile());
        int maxLength = all.get("max_length").asInt();
        int checked = 0;
        for (Iterator<Map.Entry<String, JsonNode>> it = all.get("models").fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            String[] name = e.getKey().split("\\|legacy=");
            boolean legacy = Boolean.parseBoolean(name[1].toLowerCase());
            JsonNode m = e.getValue();
            try (T5Tokenizer tok = T5Tokenizer.of(DIR.resolve(name[0]), legacy, 100)) {
                assertEquals(m.get("pad_token_id").asInt(), tok.padId(), e.getKey());
                assertEquals(m.get("eos_token_id").asInt(), tok.eosId(), e.getKey());
                assertEquals(m.get("unk_token_id").asInt(), tok.unkId(), e.getKey());
                for (JsonNode c : m.get("cases")) {
                    String p = c.get("prompt").asText(), where = e.getKey() + " " + p;
                    List<String> tokens = new ArrayList<>();
                    c.get("tokens").forEach(t -> tokens.add(t.asText()));
                    assertEquals(tokens, tok.tokenize(p), where);
                    assertArrayEquals(ints(c.get("input_ids")), tok.ids(p), where);
                    T5Tokenizer.Encoded enc = tok.encode(p, maxLength);
                    assertArrayEquals(ints(c.get("input_ids_120")), enc.ids(), where);
                    assertArrayEquals(ints(c.get("attention_mask_120")), enc.mask(), where);
                    assertEquals(c.get("input_ids").size() > maxLength, enc.truncated(), where);
                    assertEquals(c.get("decoded").asText(), tok.decode(ints(c.get("input_ids"))), where);
                    checked++;
                }
            }
        }
        assertEquals(32, checked, "16 prompts in each mode");
    }

    @Test
    void aSavedFolderReadsBackWithItsModeAndIds(@TempDir Path tmp) throws Exception {
        for (boolean legacy : new boolean[] {true, false})
            try (T5Tokenizer tok = T5Tokenizer.of(DIR.resolve("test_sentencepiece.model"), legacy, 100)) {
                Path out = tmp.resolve("tok-" + legacy);
                tok.save(out);
                try (T5Tokenizer back = T5Tokenizer.load(out)) {
                    assertEquals(legacy, back.legacy());
                    String p = "</s> a literal end token and <pad> and <extra_id_0> in text";
                    assertArrayEquals(tok.ids(p), back.ids(p));
                    assertEquals(1101, back.vocabularySize());
                }
            }
    }

    @Test
    void aFolderWithoutLegacyIsLegacyAsTransformersReadsIt(@TempDir Path tmp) throws Exception {
        Files.copy(DIR.resolve("test_sentencepiece.model"), tmp.resolve("spiece.model"));
        Files.writeString(tmp.resolve("tokenizer_config.json"), "{\"extra_ids\": 10}");
        try (T5Tokenizer tok = T5Tokenizer.load(tmp)) {
            assertTrue(tok.legacy());
            assertEquals(1010, tok.padId(), "pad after the 10 extra ids");
            assertArrayEquals(new int[] {1009, 2}, tok.ids("<extra_id_0>"));
        }
    }

    @Test
    void aFileThatIsNotSentencepieceIsRefusedByName(@TempDir Path tmp) throws Exception {
        Path bad = tmp.resolve("spiece.model");
        Files.writeString(bad, "{\"version\": \"1.0\", \"model\": {\"type\": \"Unigram\"}}"); // a tokenizer.json, renamed
        BadFileException e = assertThrows(BadFileException.class, () -> T5Tokenizer.load(tmp));
        assertTrue(e.getMessage().contains("spiece.model") && e.getMessage().contains("not a sentencepiece model"), e.getMessage());
        Files.write(bad, Files.readAllBytes(DIR.resolve("test_sentencepiece.model")).length > 0
            ? java.util.Arrays.copyOf(Files.readAllBytes(DIR.resolve("test_sentencepiece.model")), 5000) : new byte[0]);
        e = assertThrows(BadFileException.class, () -> T5Tokenizer.load(tmp), "a truncated model");
        assertTrue(e.getMessage().contains("not a sentencepiece model"), e.getMessage());
        Files.delete(bad);
        e = assertThrows(BadFileException.class, () -> T5Tokenizer.load(tmp));
        assertTrue(e.getMessage().contains("no spiece.model"), e.getMessage());
    }
}
