package org.pixelpost.model.text;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.pixelpost.io.AtomicFiles;
import org.pixelpost.io.ConfigJson;
import org.pixelpost.io.check.BadFileException;

/**
 * T5's tokenizer as transformers' {@code T5Tokenizer} applies it: a sentencepiece unigram model
 * ({@code spiece.model}), the special tokens {@code </s>}, {@code <unk>}, {@code <pad>} and the
 * extra ids {@code <extra_id_0..N-1>} (ids counting down from the end of the vocabulary), which are
 * split out of the text wherever they occur, and {@code </s>} after every text.
 *
 * <p>{@code legacy} (from {@code tokenizer_config.json}; true where it is not said) chooses between
 * transformers' two readings of the text between special tokens: legacy encodes each piece of
 * text on its own, with sentencepiece's dummy-prefix space; non-legacy adds one space at the start
 * of the whole text and none after a special token.
 */
public final class T5Tokenizer implements AutoCloseable {
    /** A special token and how it binds to the text beside it (transformers' {@code AddedToken}). */
    record Special(String text, int id, boolean lstrip, boolean rstrip) {}

    /** PixArt-alpha's call: {@code max_length=120}, padding to it, truncation. */
    public static final int PIXART_MAX_LENGTH = 120;

    private static final String SPACE = "\u2581";

    private final Path model;
    private final boolean cleanUpSpaces;
    private final SentencePiece sp, spNoPrefix;
    private final boolean legacy;
    private final Map<String, Special> specials;
    private final Map<Integer, Special> byId = new LinkedHashMap<>();
    private final int eos, pad, unk, unkLength;

    private T5Tokenizer(Path model, SentencePiece sp, SentencePiece spNoPrefix, boolean legacy, boolean cleanUpSpaces, Map<String, Special> specials,
                        String eos, String pad, String unk) {
        this.model = model;
        this.cleanUpSpaces = cleanUpSpaces;
        this.sp = sp;
        this.spNoPrefix = spNoPrefix;
        this.legacy = legacy;
        this.specials = specials;
        specials.values().forEach(s -> byId.put(s.id, s));
        this.eos = specials.get(eos).id;
        this.pad = specials.get(pad).id;
        this.unk = specials.get(unk).id;
        this.unkLength = spNoPrefix == null ? 0 : spNoPrefix.pieces(unk).length;
    }

    /**
     * A transformers tokenizer folder: {@code spiece.model}, and where present
     * {@code tokenizer_config.json} ({@code legacy}, {@code extra_ids}, the special tokens, and
     * {@code added_tokens_decoder} with their ids) and {@code special_tokens_map.json}.
     */
    public static T5Tokenizer load(Path dir) throws IOException {
        Path model = dir.resolve("spiece.model");
        if (!Files.isDirectory(dir)) throw new BadFileException(dir, "no such tokenizer folder");
        if (!Files.isRegularFile(model)) throw new BadFileException(dir, "no spiece.model: not a T5 tokenizer folder");
        JsonNode cfg = json(dir.resolve("tokenizer_config.json"));
        JsonNode map = json(dir.resolve("special_tokens_map.json"));
        boolean legacy = !cfg.hasNonNull("legacy") || cfg.get("legacy").asBoolean(true);
        return build(dir, model, legacy, cfg.path("clean_up_tokenization_spaces").asBoolean(true), cfg.path("extra_ids").asInt(100),
            tokenText(cfg, map, "eos_token", "</s>"), tokenText(cfg, map, "unk_token", "<unk>"), tokenText(cfg, map, "pad_token", "<pad>"),
            cfg.path("added_tokens_decoder"));
    }

    /** The tokenizer of a sentencepiece model file, {@code extraIds} extra ids, T5's special tokens. */
    public static T5Tokenizer of(Path spieceModel, boolean legacy, int extraIds) throws IOException {
        return build(spieceModel.getParent(), spieceModel, legacy, true, extraIds, "</s>", "<unk>", "<pad>", null);
    }

    private static T5Tokenizer build(Path dir, Path model, boolean legacy, boolean cleanUp, int extraIds, String eos, String unk, String pad,
                                     JsonNode addedDecoder) throws IOException {
        if (extraIds < 0) throw new BadFileException(dir.resolve("tokenizer_config.json"), "extra_ids " + extraIds + " is negative");
        SentencePiece sp = SentencePiece.load(model, true);
        SentencePiece noPrefix = null;
        try {
            noPrefix = legacy ? null : SentencePiece.load(model, false);
            Map<String, Special> specials = new LinkedHashMap<>();
            if (addedDecoder != null && addedDecoder.isObject() && addedDecoder.size() > 0) {
                // the ids and flags transformers saved
                for (Iterator<Map.Entry<String, JsonNode>> it = addedDecoder.fields(); it.hasNext(); ) {
                    Map.Entry<String, JsonNode> e = it.next();
                    JsonNode t = e.getValue();
                    int id;
                    try {
                        id = Integer.parseInt(e.getKey());
                    } catch (NumberFormatException x) {
                        throw new BadFileException(dir.resolve("tokenizer_config.json"), "added_tokens_decoder key '" + e.getKey() + "' is not an id");
                    }
                    specials.put(t.path("content").asText(), new Special(t.path("content").asText(), id, t.path("lstrip").asBoolean(false), t.path("rstrip").asBoolean(false)));
                }
            } else {
                // as T5Tokenizer builds them: extra id i is vocabulary size - 1 + extraIds - i, binding to no space either side
                for (int i = 0; i < extraIds; i++) {
                    String s = "<extra_id_" + i + ">";
                    specials.put(s, new Special(s, sp.size() - 1 + extraIds - i, true, true));
                }
            }
            int next = sp.size() + extraIds;
            for (String s : List.of(eos, unk, pad)) {
                if (specials.containsKey(s)) continue;
                // a special token that is a piece keeps its id; one that is not gets the next id after the extra ids
                specials.put(s, new Special(s, sp.has(s) ? sp.id(s) : next++, false, false));
            }
            return new T5Tokenizer(model, sp, noPrefix, legacy, cleanUp, specials, eos, pad, unk);
        } catch (IOException | RuntimeException e) {
            sp.close();
            if (noPrefix != null) noPrefix.close();
            throw e;
        }
    }

    private static JsonNode json(Path f) throws IOException {
        if (!Files.isRegularFile(f)) return ConfigJson.MAPPER.createObjectNode();
        try {
            JsonNode j = ConfigJson.MAPPER.readTree(f.toFile());
            if (j == null || !j.isObject()) throw new BadFileException(f, "not a JSON object");
            return j;
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new BadFileException(f, "malformed JSON (" + e.getOriginalMessage() + ")");
        }
    }

    /** A special token's text: a string or {@code {"content": ...}}, from the config or the special-tokens map. */
    private static String tokenText(JsonNode cfg, JsonNode map, String key, String fallback) {
        for (JsonNode j : List.of(cfg.path(key), map.path(key))) {
            if (j.isTextual()) return j.asText();
            if (j.path("content").isTextual()) return j.path("content").asText();
        }
        return fallback;
    }

    public boolean legacy() { return legacy; }
    public int eosId() { return eos; }
    public int padId() { return pad; }
    public int unkId() { return unk; }

    /** Every id the tokenizer gives: the pieces, the extra ids, added special tokens. */
    public int vocabularySize() {
        int max = sp.size() - 1;
        for (Special s : specials.values()) max = Math.max(max, s.id);
        return max + 1;
    }

    /** The text split on special tokens, each kept whole, the spaces beside those that strip them removed. */
    private List<String> splitOnSpecials(String text) {
        List<String> parts = new ArrayList<>();
        int start = 0, i = 0;
        while (i < text.length()) {
            String best = null;
            for (String s : specials.keySet())
                if (text.startsWith(s, i) && (best == null || s.length() > best.length())) best = s; // the longest at the leftmost place
            if (best == null) {
                i++;
                continue;
            }
            parts.add(text.substring(start, i));
            parts.add(best);
            i += best.length();
            start = i;
        }
        parts.add(text.substring(start));
        for (int k = 1; k < parts.size(); k += 2) {
            Special s = specials.get(parts.get(k));
            if (s.rstrip) parts.set(k + 1, parts.get(k + 1).stripLeading());
            if (s.lstrip) parts.set(k - 1, parts.get(k - 1).stripTrailing());
        }
        return parts;
    }

    /** Pieces and their ids, in step. */
    private record Pieces(List<String> tokens, List<Integer> ids) {
        Pieces() {
            this(new ArrayList<>(), new ArrayList<>());
        }
    }

    private Pieces pieces(String text) {
        Pieces out = new Pieces();
        if (text.isEmpty()) return out;
        if (!legacy) text = SPACE + text.replace(SPACE, " ");
        List<String> parts = splitOnSpecials(text);
        for (int k = 0; k < parts.size(); k++) {
            String part = parts.get(k);
            if (part.isEmpty()) continue;
            if (k % 2 == 1) {
                out.tokens.add(part);
                out.ids.add(specials.get(part).id);
                continue;
            }
            String[] p;
            int[] ids;
            int skip = 0;
            if (legacy || !(part.startsWith(SPACE) || part.startsWith(" "))) {
                SentencePiece model = legacy ? sp : spNoPrefix;
                p = model.pieces(part);
                ids = model.ids(part);
            } else {
                // the text after an unknown token, which is then cut off: sentencepiece adds no space of its own
                String s = specials.get(unkText()).text + part;
                p = spNoPrefix.pieces(s);
                ids = spNoPrefix.ids(s);
                if (p.length >= unkLength) skip = unkLength;
            }
            for (int j = skip; j < p.length; j++) {
                out.tokens.add(p[j]);
                out.ids.add(ids[j]);
            }
        }
        // the start-of-text space before a special token is dropped
        if (!legacy && out.tokens.size() > 1 && out.tokens.get(0).equals(SPACE) && specials.containsKey(out.tokens.get(1))) {
            out.tokens.remove(0);
            out.ids.remove(0);
        }
        return out;
    }

    private String unkText() {
        return byId.get(unk).text;
    }

    /** The tokens of {@code text} as transformers' {@code tokenize} gives them (no {@code </s>}). */
    public List<String> tokenize(String text) {
        return pieces(text).tokens;
    }

    /** The ids of {@code text} followed by {@code </s>}. */
    public int[] ids(String text) {
        List<Integer> ids = pieces(text).ids;
        int[] out = new int[ids.size() + 1];
        for (int i = 0; i < ids.size(); i++) out[i] = ids.get(i);
        out[ids.size()] = eos;
        return out;
    }

    /** Ids and mask of one text at a fixed length, and whether the text was cut to fit. */
    public record Encoded(int[] ids, int[] mask, boolean truncated) {}

    /** The ids cut to {@code maxLength} ({@code </s>} kept last), padded with {@code <pad>}, and the mask of real tokens. */
    public Encoded encode(String text, int maxLength) {
        if (maxLength < 1) throw new IllegalArgumentException("max length " + maxLength + " must be positive");
        int[] all = ids(text);
        boolean cut = all.length > maxLength;
        int n = Math.min(all.length, maxLength);
        int[] ids = new int[maxLength], mask = new int[maxLength];
        Arrays.fill(ids, pad);
        System.arraycopy(all, 0, ids, 0, n);
        if (cut) ids[n - 1] = eos;
        Arrays.fill(mask, 0, n, 1);
        return new Encoded(ids, mask, cut);
    }

    /** The text of ids, special tokens skipped. */
    public String decode(int[] ids) {
        int[] kept = Arrays.stream(ids).filter(i -> !byId.containsKey(i)).toArray();
        String text = sp.decode(kept).strip(); // transformers strips the decoded text
        if (!cleanUpSpaces) return text;
        // transformers' clean_up_tokenization: no space before punctuation and English contractions
        for (String[] r : new String[][] {{" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
            {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}})
            text = text.replace(r[0], r[1]);
        return text;
    }

    /** Writes the folder as transformers reads it: {@code spiece.model} and {@code tokenizer_config.json}. */
    public void save(Path out) throws IOException {
        Files.createDirectories(out);
        if (!Files.exists(out.resolve("spiece.model")) || !Files.isSameFile(model, out.resolve("spiece.model")))
            AtomicFiles.write(out.resolve("spiece.model"), tmp -> Files.copy(model, tmp, StandardCopyOption.REPLACE_EXISTING));
        var j = ConfigJson.MAPPER.createObjectNode();
        j.put("tokenizer_class", "T5Tokenizer").put("legacy", legacy).put("eos_token", byId.get(eos).text)
            .put("unk_token", byId.get(unk).text).put("pad_token", byId.get(pad).text).put("model_max_length", PIXART_MAX_LENGTH)
            .put("clean_up_tokenization_spaces", cleanUpSpaces);
        var dec = j.putObject("added_tokens_decoder");
        specials.values().stream().sorted(java.util.Comparator.comparingInt(Special::id)).forEach(s ->
            dec.putObject(Integer.toString(s.id)).put("content", s.text).put("lstrip", s.lstrip).put("rstrip", s.rstrip)
                .put("normalized", false).put("single_word", false).put("special", true));
        int extras = (int) specials.keySet().stream().filter(s -> s.startsWith("<extra_id_")).count();
        j.put("extra_ids", extras);
        var add = j.putArray("additional_special_tokens");
        for (int i = 0; i < extras; i++) add.add("<extra_id_" + i + ">");
        AtomicFiles.writeString(out.resolve("tokenizer_config.json"), ConfigJson.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(j));
    }

    @Override
    public void close() {
        sp.close();
        if (spNoPrefix != null) spNoPrefix.close();
    }
}
