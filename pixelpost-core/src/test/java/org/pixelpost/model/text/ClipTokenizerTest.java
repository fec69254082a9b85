package org.pixelpost.model.text;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * CLIP's tokenizer from its merges alone. Expected ids of the ASCII prompts come from an
 * independent implementation (the JavaScript port in the same npm package, run with Node.js);
 * non-ASCII text is checked by the lossless round trip of byte-level BPE (that port maps
 * characters, not UTF-8 bytes, so it is no reference there).
 */
class ClipTokenizerTest {
    static ClipTokenizer tok;

    @BeforeAll
    static void load() throws Exception {
        tok = ClipTokenizer.embedded();
    }

    static long[] framed(int... ids) {
        long[] out = new long[77];
        Arrays.fill(out, 49407);
        out[0] = 49406;
        for (int i = 0; i < ids.length; i++) out[i + 1] = ids[i];
        return out;
    }

    @Test
    void vocabularyFollowsFromTheMerges() {
        assertEquals(49408, tok.vocabSize());
        assertEquals(49406, tok.startId());
        assertEquals(49407, tok.endId());
        assertEquals(77, tok.contextLength());
    }

    @Test
    void knownPrompts() {
        assertArrayEquals(framed(320, 1125, 539, 320, 2368), tok.encode("a photo of a cat").ids());
        assertEquals(List.of(3306, 267, 1002, 995, 585, 568, 273, 271, 273, 275, 2432, 2923, 713, 585, 286),
            tok.encodeRaw("Hello, World!!! It's 2024 -- isn't it?"), "punctuation, contractions, numbers digit by digit");
        assertEquals(List.of(320, 3086, 539, 518, 29720, 268, 4730, 267, 279, 330, 267, 6087, 525, 1486, 2631),
            tok.encodeRaw("A  painting   of the Eiffel-Tower, 8k, trending on artstation"), "whitespace collapsed, lower case");
        assertEquals(List.of(272, 273, 274, 275, 276, 277, 278, 279, 280, 271, 274, 269, 272, 275, 272, 276, 280), tok.encodeRaw("1234567890 3.14159"));
        assertEquals(List.of(261, 283, 3640, 285, 2172, 261, 3341), tok.encodeRaw("&amp; &lt;tag&gt; rock&roll"), "HTML entities unescaped");
    }

    @Test
    void emptyLongAndNonAsciiPrompts() {
        ClipTokenizer.Tokens empty = tok.encode("");
        assertArrayEquals(framed(), empty.ids());
        assertFalse(empty.truncated());
        String longPrompt = String.join(" ", java.util.stream.IntStream.range(0, 90).mapToObj(i -> "word" + (i % 7)).toList());
        ClipTokenizer.Tokens cut = tok.encode(longPrompt);
        assertTrue(cut.truncated());
        assertEquals(77, cut.ids().length);
        assertEquals(49406, cut.ids()[0]);
        assertEquals(49407, cut.ids()[76], "the end token survives truncation");
        assertEquals(2653, cut.ids()[1]);
        assertEquals(271, cut.ids()[2]);
        for (String text : List.of("café crème brûlée", "東京の夜景", "a 🐶 and a 🐱 🏳️‍🌈", "naïve résumé — “quotes”"))
            // every byte of the cleaned text comes back; only spacing around word ends is CLIP's own (each word ends with a space)
            assertEquals(ClipTokenizer.clean(text).replace(" ", ""), tok.decode(tok.encodeRaw(text)).replace(" ", ""), text);
        assertNotEquals(tok.encodeRaw("cafe"), tok.encodeRaw("café"));
    }

    /**
     * Prompts as people type them (decomposed accents, typed special tokens, control characters,
     * curly quotes, ligatures, full-width letters, odd spaces, terminal escapes, Windows-1252 C1
     * characters, HTML entities, CJK, emoji), against openai CLIP's tokenizer with ftfy on
     * ({@code bench/fixtures/clip_cleanup.py} wrote the ids).
     */
    @Test
    void cleanupMatchesOpenaiClipWithFtfy() throws Exception {
        com.fasterxml.jackson.databind.JsonNode cases;
        try (var in = ClipTokenizerTest.class.getResourceAsStream("clip_cleanup_cases.json")) {
            cases = new com.fasterxml.jackson.databind.ObjectMapper().readTree(in).path("cases");
        }
        assertTrue(cases.size() >= 30);
        List<String> wrong = new java.util.ArrayList<>();
        for (var c : cases) {
            String prompt = c.path("prompt").asText();
            List<Integer> expected = new java.util.ArrayList<>();
            c.path("ids").forEach(i -> expected.add(i.asInt()));
            List<Integer> got = tok.encodeRaw(prompt);
            if (!got.equals(expected)) wrong.add(prompt.codePoints().mapToObj(cp -> cp < 0x20 || cp > 0x7e ? String.format("\\u%04x", cp) : Character.toString(cp))
                .collect(java.util.stream.Collectors.joining()) + ": " + got + " expected " + expected);
        }
        assertTrue(wrong.isEmpty(), wrong.size() + " of " + cases.size() + " differ:\n" + String.join("\n", wrong));
        ClipTokenizer.Tokens typed = tok.encode("<|startoftext|> a cat <|endoftext|>");
        assertEquals(6, typed.length(), "typed special tokens are the tokens: start, start, a, cat, end, end");
    }

    @Test
    void aSavedTokenizerFolderTokenizesTheSame(@TempDir Path dir) throws Exception {
        tok.save(dir);
        ClipTokenizer back = ClipTokenizer.load(dir);
        assertEquals(tok.vocabSize(), back.vocabSize());
        for (String p : List.of("a photo of a cat", "a 🐶", "Hello, World!!!"))
            assertArrayEquals(tok.encode(p).ids(), back.encode(p).ids(), p);
    }
}
