/* What an eval run evaluates: models and tasks in order (eval/plan.h). */
#include "config.h"
#include "eval/plan.h"
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include "io/delta_apply.h"
#include "io/model_io.h"

void ds_eval_plan_add_model(ds_eval_plan *p, const char *path)
{
    p->models = ds_realloc(p->models, (size_t)(p->n_models + 1) * sizeof *p->models);
    ds_eval_model *r = &p->models[p->n_models++];
    r->path = path ? ds_strdup(path) : NULL;
    r->label = ds_strdup(path ? path : "base");
    char *tmp = ds_strdup(path ? path : "base"), *b = basename(tmp);
    const size_t n = strlen(b);
    if (n > 6 && strcmp(b + n - 6, ".bd.h5") == 0) b[n - 6] = 0;
    else if (n > 3 && strcmp(b + n - 3, ".h5") == 0) b[n - 3] = 0;
    r->id = ds_strdup(b);
    free(tmp);
}

int ds_eval_plan_add_delta(ds_eval_plan *p, const char *path)
{
    if (!ds_file_exists(path)) return ds_err(DS_EXIT_INPUT, "--delta %s: no such file", path);
    ds_eval_plan_add_model(p, path);
    return 0;
}

int ds_eval_plan_read_list(ds_eval_plan *p, const char *path)
{
    char *text;
    size_t len;
    int lineno = 0, rc = ds_read_file(path, &text, &len); /* the message names the file */
    if (rc) return rc;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        while (*line == ' ' || *line == '\t') line++;
        size_t n = strlen(line);
        while (n && (line[n - 1] == ' ' || line[n - 1] == '\t' || line[n - 1] == '\r')) line[--n] = 0;
        if (!n || line[0] == '#') continue;
        if (strcmp(line, "base") == 0) {
            ds_eval_plan_add_model(p, NULL);
        } else if (!ds_file_exists(line)) {
            rc = ds_err(DS_EXIT_INPUT, "--delta-list %s: line %d: no such delta file '%s'", path, lineno, line);
            break;
        } else {
            ds_eval_plan_add_model(p, line);
        }
    }
    free(text);
    return rc;
}

int ds_eval_plan_add_task(ds_eval_plan *p, const char *spec)
{
    ds_eval_task t;
    int rc = ds_eval_task_parse(spec, &t);
    if (rc) return rc;
    p->tasks = ds_realloc(p->tasks, (size_t)(p->n_tasks + 1) * sizeof *p->tasks);
    p->tasks[p->n_tasks++] = t;
    return 0;
}

int ds_eval_plan_count(const ds_eval_plan *p, ds_task_kind k)
{
    int n = 0;
    for (int i = 0; i < p->n_tasks; i++) n += p->tasks[i].kind == k;
    return n;
}

int ds_eval_plan_unique_ids(const ds_eval_plan *p)
{
    for (int a = 0; a < p->n_models; a++)
        for (int b = 0; b < a; b++)
            if (strcmp(p->models[a].id, p->models[b].id) == 0)
                return ds_err(DS_EXIT_USAGE, "mtbench-answers: models %s and %s would both write %s.jsonl",
                              p->models[b].label, p->models[a].label, p->models[a].id);
    return 0;
}

void ds_eval_plan_free(ds_eval_plan *p)
{
    for (int i = 0; i < p->n_models; i++) {
        free(p->models[i].path);
        free(p->models[i].label);
        free(p->models[i].id);
    }
    for (int i = 0; i < p->n_tasks; i++) ds_eval_task_free(&p->tasks[i]);
    free(p->models);
    free(p->tasks);
    memset(p, 0, sizeof *p);
}

int ds_eval_load_model(const ds_ctx *ctx, const char *model, const char *delta, int force, ds_llama *m,
                       ds_tokenizer *tok)
{
    return ds_eval_load_stage(ctx, model, delta, force, 0, NULL, m, tok);
}

int ds_eval_load_stage(const ds_ctx *ctx, const char *model, const char *delta, int force, int P, ds_pipe *pipe,
                       ds_llama *m, ds_tokenizer *tok)
{
    /* weights as stored (bf16: 2 bytes a parameter); the delta is added in
     * that precision, as apply would (each stage to the tensors it holds) */
    int rc = pipe ? ds_llama_load_path_pipe(ctx, model, P, pipe, m, tok)
                  : ds_llama_load_path_as(ctx, model, m, tok, NULL, DS_LLAMA_LOAD_STORED);
    if (rc) return rc;
    if (delta && (rc = ds_delta_apply_to_model(ctx, delta, model, force, &m->cfg, m->n_tensors, m->tinfo, m->p))) {
        ds_llama_free(m);
        ds_tokenizer_free(tok);
        if (pipe) ds_pipe_free(pipe);
    }
    return rc;
}
