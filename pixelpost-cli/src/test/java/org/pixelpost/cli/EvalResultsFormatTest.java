package org.pixelpost.cli;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.Test;

/** The text and CSV results carry the Wilson intervals and the Bradley-Terry ranking the JSON has. */
class EvalResultsFormatTest {
    static ObjectNode share(int count, double share, double lo, double hi) {
        return Json.MAPPER.createObjectNode().put("count", count).put("share", share).put("ci95_low", lo).put("ci95_high", hi);
    }

    @Test
    void textAndCsvShowIntervalsAndTheRanking() throws Exception {
        ObjectNode r = Json.MAPPER.createObjectNode();
        r.put("study", "s").put("kind", "ab").put("items", 10).put("votes", 50).put("annotators_per_item", 5).put("majority_rule", "majority")
            .put("fleiss_kappa", 0.4);
        ObjectNode row = r.putArray("pairs").addObject().put("model_a", "A").put("model_b", "B");
        ObjectNode f = row.putObject("flaws").put("n", 10);
        f.set("a_wins", share(6, 0.6, 0.3127, 0.8318));
        f.set("tie", share(1, 0.1, 0.0179, 0.4042));
        f.set("b_wins", share(3, 0.3, 0.1078, 0.6032));
        var bt = r.putObject("bradley_terry").putArray("flaws");
        bt.addObject().put("model", "A").put("log_strength", 0.5).put("ci95_low", 0.1).put("ci95_high", 0.9);
        bt.addObject().put("model", "B").put("log_strength", -0.5).put("ci95_low", -0.9).put("ci95_high", -0.1);
        ObjectNode q = r.putObject("quality").put("gold_items", 4).put("min_gold_accuracy", 0.7);
        q.putArray("annotators").addObject().put("annotator", "careless").put("id", "ab12cd").put("votes", 30).put("gold_answered", 4)
            .put("gold_correct", 1).put("median_seconds_between_votes", 1.5).put("flagged", true);
        String text = EvalCommand.Results.text(r);
        assertTrue(text.contains("careless") && text.contains("gold 1/4") && text.contains("FLAGGED"), text);
        assertTrue(text.contains("95% Wilson: A wins 31.3-83.2%, tie 1.8-40.4%, B wins 10.8-60.3%"), text);
        assertTrue(text.contains("1. A") && text.contains("+0.500 (+0.100 to +0.900)"), text);
        String csv = EvalCommand.Results.csv(r);
        assertTrue(csv.startsWith("model_a,model_b,question,n,a_wins,tie,b_wins,a_wins_pct,tie_pct,b_wins_pct,a_wins_ci95_low"), csv);
        assertTrue(csv.contains("A,B,flaws,10,6,1,3,60.0,10.0,30.0,31.3,83.2,1.8,40.4,10.8,60.3"), csv);
        assertTrue(csv.contains("flaws,2,B,-0.5000,-0.9000,-0.1000"), csv);
    }
}
