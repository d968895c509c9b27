-- placeholder: the workflow branch adds the real 003_workflow.sql (drop this file at merge).
select 1;
