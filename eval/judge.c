/* MT-Bench judge prompts (eval/judge.h). */
#include "config.h"
#include "eval/judge.h"
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "src/ds.h"

static const char *const judge_names[DS_JUDGE_N] = {"single-v1", "single-math-v1", "single-v1-multi-turn",
                                                    "single-math-v1-multi-turn"};

/* the fields FastChat passes to each template (run_judge_single) */
static const char *const fields_single[] = {"question", "answer", "ref_answer_1"};
static const char *const fields_mt[] = {"question_1", "answer_1", "question_2", "answer_2", "ref_answer_1",
                                        "ref_answer_2"};

int ds_mt_judge_needs_ref(const char *category)
{
    /* FastChat's NEED_REF_CATS (arena-hard-200 is not an MT-Bench category) */
    return strcmp(category, "math") == 0 || strcmp(category, "reasoning") == 0 || strcmp(category, "coding") == 0 ||
           strcmp(category, "arena-hard-200") == 0;
}

char *ds_mt_judge_default_path(const char *questions)
{
    char *tmp = ds_strdup(questions);
    const char *dir = dirname(tmp);
    char *p = ds_malloc(strlen(dir) + 24);
    sprintf(p, "%s/judge_prompts.jsonl", dir);
    free(tmp);
    return p;
}

char *ds_format_fields(const char *tmpl, int n, const char *const *names, const char *const *values, char *err,
                       size_t errsz)
{
    size_t cap = strlen(tmpl) + 1, len = 0;
    for (int i = 0; i < n; i++) cap += strlen(values[i]) * 4; /* a field may occur more than once */
    char *out = ds_malloc(cap + 1);
    for (const char *s = tmpl; *s;) {
        if ((s[0] == '{' && s[1] == '{') || (s[0] == '}' && s[1] == '}')) {
            out[len++] = *s;
            s += 2;
        } else if (*s == '}') {
            snprintf(err, errsz, "single '}' in the template");
            free(out);
            return NULL;
        } else if (*s == '{') {
            const char *e = strchr(s, '}');
            int i = 0;
            while (e && i < n && !(strlen(names[i]) == (size_t)(e - s - 1) && strncmp(names[i], s + 1, (size_t)(e - s - 1)) == 0))
                i++;
            if (!e || i == n) {
                snprintf(err, errsz, "%s%.*s%s", e ? "unknown field {" : "unclosed '{' at \"", e ? (int)(e - s - 1) : 20,
                         s + 1, e ? "}" : "\"");
                free(out);
                return NULL;
            }
            const size_t vl = strlen(values[i]);
            if (len + vl + strlen(e + 1) + 1 > cap) {
                cap = 2 * (len + vl) + strlen(e + 1) + 1;
                out = ds_realloc(out, cap + 1);
            }
            memcpy(out + len, values[i], vl);
            len += vl;
            s = e + 1;
        } else {
            out[len++] = *s++;
        }
        if (len + 2 > cap) out = ds_realloc(out, (cap *= 2) + 1);
    }
    out[len] = 0;
    return out;
}

/* One JSON line of a JSONL file, or NULL at the end; *lineno counts lines. */
static json_t *next_line(FILE *f, const char *path, int *lineno, int *rc)
{
    char *line = NULL;
    size_t cap = 0;
    json_t *v = NULL;
    while (!v && getline(&line, &cap, f) >= 0) {
        (*lineno)++;
        if (strspn(line, " \t\r\n") == strlen(line)) continue;
        json_error_t e;
        v = json_loads(line, 0, &e);
        if (!v || !json_is_object(v)) {
            *rc = ds_err(DS_EXIT_INPUT, "%s:%d: %s%s", path, *lineno, v ? "not a JSON object" : "invalid JSON: ",
                         v ? "" : e.text);
            json_decref(v);
            v = NULL;
            break;
        }
    }
    free(line);
    return v;
}

static int load_prompts(ds_mt_judge *j)
{
    FILE *f = fopen(j->prompts_path, "r");
    if (!f) return ds_err(DS_EXIT_INPUT, "%s: cannot open the judge prompts (FastChat's judge_prompts.jsonl)", j->prompts_path);
    int rc = 0, lineno = 0;
    json_t *v;
    while (!rc && (v = next_line(f, j->prompts_path, &lineno, &rc))) {
        const char *name = json_string_value(json_object_get(v, "name"));
        int k = 0;
        while (name && k < DS_JUDGE_N && strcmp(name, judge_names[k]) != 0) k++;
        if (!name || k == DS_JUDGE_N || j->prompts[k]) {
            json_decref(v);
            continue; /* pairwise prompts, or a later duplicate: FastChat keeps the first too */
        }
        if (!json_is_string(json_object_get(v, "system_prompt")) || !json_is_string(json_object_get(v, "prompt_template")))
            rc = ds_err(DS_EXIT_INPUT, "%s:%d: judge prompt %s: \"system_prompt\" and \"prompt_template\" must be strings",
                        j->prompts_path, lineno, name);
        j->prompts[k] = v;
    }
    fclose(f);
    char missing[160] = "";
    for (int k = 0; k < DS_JUDGE_N; k++)
        if (!j->prompts[k]) snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s%s", *missing ? ", " : "", judge_names[k]);
    if (!rc && *missing)
        rc = ds_err(DS_EXIT_INPUT, "%s: no judge prompt named %s (FastChat's single-answer prompts single-v1, "
                                   "single-math-v1 and their -multi-turn variants are needed)", j->prompts_path, missing);
    for (int k = 0; k < DS_JUDGE_N && !rc; k++) { /* a template with another field would fail for every answer */
        const int mt = k >= DS_JUDGE_SINGLE_MT, nf = mt ? 6 : 3;
        const char *const *names = mt ? fields_mt : fields_single;
        const char *vals[6] = {"", "", "", "", "", ""};
        char err[160];
        char *s = ds_format_fields(json_string_value(json_object_get(j->prompts[k], "prompt_template")), nf, names,
                                   vals, err, sizeof err);
        if (!s) rc = ds_err(DS_EXIT_INPUT, "%s: judge prompt %s: %s", j->prompts_path, judge_names[k], err);
        free(s);
    }
    return rc;
}

/* reference_answer/gpt-4.jsonl beside the questions, when present */
static int load_refs(ds_mt_judge *j, const char *questions)
{
    char *tmp = ds_strdup(questions);
    const char *dir = dirname(tmp);
    j->refs = json_object();
    j->refs_path = ds_malloc(strlen(dir) + 32);
    sprintf(j->refs_path, "%s/reference_answer/gpt-4.jsonl", dir);
    free(tmp);
    struct stat st;
    if (stat(j->refs_path, &st) != 0) {
        free(j->refs_path);
        j->refs_path = NULL;
        return 0;
    }
    FILE *f = fopen(j->refs_path, "r");
    if (!f) return ds_err(DS_EXIT_INPUT, "%s: cannot open", j->refs_path);
    int rc = 0, lineno = 0;
    json_t *v;
    while (!rc && (v = next_line(f, j->refs_path, &lineno, &rc))) {
        json_t *qid = json_object_get(v, "question_id"),
               *turns = json_object_get(json_array_get(json_object_get(v, "choices"), 0), "turns");
        if (!json_is_integer(qid) || !json_is_array(turns))
            rc = ds_err(DS_EXIT_INPUT, "%s:%d: not a FastChat answer (question_id, choices[0].turns)", j->refs_path,
                        lineno);
        char key[32];
        snprintf(key, sizeof key, "%lld", (long long)json_integer_value(qid));
        if (!rc && !json_object_get(j->refs, key)) json_object_set(j->refs, key, turns);
        json_decref(v);
    }
    fclose(f);
    return rc;
}

/* Reference turn k (0-based) of q, or NULL. */
static const char *ref_turn(const ds_mt_judge *j, const ds_mtbench_question *q, int k)
{
    char key[32];
    snprintf(key, sizeof key, "%d", q->question_id);
    json_t *t = json_object_get(j->refs, key);
    if (t) return json_string_value(json_array_get(t, (size_t)k));
    return k < q->n_reference ? q->reference[k] : NULL;
}

int ds_mt_judge_load(ds_mt_judge *j, const char *prompts_path, const char *questions, const ds_mtbench *mt,
                     const int *index, int n)
{
    memset(j, 0, sizeof *j);
    j->prompts_path = ds_strdup(prompts_path);
    int rc = load_prompts(j);
    if (!rc) rc = load_refs(j, questions);
    for (int i = 0; i < n && !rc; i++) {
        const ds_mtbench_question *q = &mt->items[index[i]];
        if (!ds_mt_judge_needs_ref(q->category)) continue;
        for (int k = 0; k < q->n_turns && k < 2 && !rc; k++)
            if (!ref_turn(j, q, k))
                rc = ds_err(DS_EXIT_INPUT, "%s: question %d (%s) needs a reference answer for turn %d: none in %s nor "
                                           "in its \"reference\"", questions, q->question_id, q->category, k + 1,
                            j->refs_path ? j->refs_path : "reference_answer/gpt-4.jsonl (absent)");
    }
    if (rc) ds_mt_judge_free(j);
    return rc;
}

void ds_mt_judge_free(ds_mt_judge *j)
{
    for (int k = 0; k < DS_JUDGE_N; k++) json_decref(j->prompts[k]);
    json_decref(j->refs);
    free(j->prompts_path);
    free(j->refs_path);
    memset(j, 0, sizeof *j);
}

static void write_one(FILE *f, const ds_mt_judge *j, int k, const ds_mtbench_question *q, const char *model_id,
                      const char *label, int turn, int nf, const char *const *names, const char *const *vals)
{
    char err[160];
    json_t *p = j->prompts[k];
    char *user = ds_format_fields(json_string_value(json_object_get(p, "prompt_template")), nf, names, vals, err,
                                  sizeof err);
    if (!user) ds_die("%s: %s: %s", j->prompts_path, judge_names[k], err); /* checked at load */
    const char *fmt = json_string_value(json_object_get(p, "output_format"));
    json_t *o = json_pack("{s:i, s:s, s:s, s:s, s:i, s:s, s:O, s:s, s:s}", "question_id", q->question_id, "model_id",
                          model_id, "delta", label, "category", q->category, "turn", turn, "judge", judge_names[k],
                          "system_prompt", json_object_get(p, "system_prompt"), "user_prompt", user, "output_format",
                          fmt ? fmt : "[[rating]]");
    char *s = json_dumps(o, JSON_COMPACT);
    fprintf(f, "%s\n", s);
    free(s);
    free(user);
    json_decref(o);
}

void ds_mt_judge_write(FILE *f, const ds_mt_judge *j, const ds_mtbench_question *q, const char *model_id,
                       const char *label, const json_t *answers)
{
    const int ref = ds_mt_judge_needs_ref(q->category);
    const char *a1 = json_string_value(json_array_get(answers, 0)), *a2 = json_string_value(json_array_get(answers, 1));
    const char *r1 = ref ? ref_turn(j, q, 0) : "", *r2 = ref && q->n_turns > 1 ? ref_turn(j, q, 1) : "";
    if (q->n_turns >= 1) {
        const char *vals[] = {q->turns[0], a1 ? a1 : "", r1 ? r1 : ""};
        write_one(f, j, ref ? DS_JUDGE_MATH : DS_JUDGE_SINGLE, q, model_id, label, 1, 3, fields_single, vals);
    }
    if (q->n_turns >= 2) {
        const char *vals[] = {q->turns[0], a1 ? a1 : "", q->turns[1], a2 ? a2 : "", r1 ? r1 : "", r2 ? r2 : ""};
        write_one(f, j, ref ? DS_JUDGE_MATH_MT : DS_JUDGE_SINGLE_MT, q, model_id, label, 2, 6, fields_mt, vals);
    }
}
